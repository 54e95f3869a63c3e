"""Live event streams: Server-Sent Events (``GET /api/v1/events``) and WebSocket (``GET /ws``).

Both carry the same task events, each with its journal seq, from the node's live feed; both
resume: SSE from ``Last-Event-ID`` or ``?since=SEQ``, the WebSocket from ``?since=SEQ`` (see
``actorq.streams`` for how the missed events are read without gap). Filters: ``queue``,
``type``, ``task``, each repeatable or comma-separated.

A reader too slow for its buffer (``actorq.actors.feed.BUFFER`` items) gets a last ``lagged``
message with the seq to resume from, and the stream ends. A reader that does not read at all
cannot even be sent that: once its connection's own buffers are full, it is disconnected,
and resumes from the last id it got. Writes to one reader are grouped (at most one every
``_LINGER`` seconds while live events flow), and an event is encoded once for all readers, so
a crowd of slow readers costs the node little.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from multidict import MultiMapping

from actorq.actors.feed import Batch, Item
from actorq.errors import InvalidInput
from actorq.http.keys import RUNTIME, SHUTDOWN
from actorq.render import iso
from actorq.streams import Filter, Stream

log = logging.getLogger("actorq.http")
routes = web.RouteTableDef()

_KEEPALIVE = 15.0  # seconds of silence before an SSE comment or a WebSocket ping
_LINGER = 0.02  # live events are written to one reader at most this often (seconds)
_STUCK = 1.0  # a write that cannot go out this long, once the reader lagged, ends it
# The kernel's send buffer of a stream's connection (it would grow to megabytes for a reader
# that does not read): past it, the reader's events wait in its own bounded buffer instead.
# 16 KiB (the kernel doubles it) still carries thousands of events a second over a 50 ms
# round trip; with 200 readers that never read it kept the node's pace (benchmarks/
# stalled_clients.py), where 64 KiB cost a quarter of it.
_SOCKET_BUFFER = 16 * 1024


def _edge_json(item: Item) -> str:
    """The item as the streams show it (ISO time), encoded once for every reader."""
    text: str | None = item.cache.get("json")
    if text is None:
        if item.kind == "lagged":
            text = json.dumps({"kind": "lagged", "seq": item.seq if item.seq >= 0 else None})
        else:
            text = json.dumps({**item.to_json(), "at": iso(item.at)})
        item.cache["json"] = text
    return text


def _sse(item: Item) -> bytes:
    data: bytes | None = item.cache.get("sse")
    if data is None:
        if item.kind == "lagged":  # no id: the reader resumes from the last event's own
            data = f"event: lagged\ndata: {_edge_json(item)}\n\n".encode()
        else:
            data = f"id: {item.seq}\nevent: {item.kind}\ndata: {_edge_json(item)}\n\n".encode()
        item.cache["sse"] = data
    return data


def _sse_batch(batch: Batch, wanted: Filter) -> bytes:
    if not wanted.everything:
        return b"".join(_sse(i) for i in batch.items if wanted(i) or i.kind == "lagged")
    data: bytes | None = batch.cache.get("sse")
    if data is None:
        data = batch.cache["sse"] = b"".join(_sse(i) for i in batch.items)
    return data


def _values(query: MultiMapping[str], name: str) -> list[str]:
    """A filter's values: ``?queue=a&queue=b`` or ``?queue=a,b``."""
    return [v for raw in query.getall(name, ()) for v in raw.split(",") if v]


def _filter(query: MultiMapping[str]) -> Filter:
    return Filter.of(_values(query, "queue"), _values(query, "type"), _values(query, "task"))


def _seq(raw: str, name: str) -> int:
    try:
        seq = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a journal seq (an integer), not {raw!r}") from None
    if seq < 0:
        raise InvalidInput(f"{name} must be 0 or more, not {seq}")
    return seq


def _since(request: web.Request) -> int | None:
    """Where to resume: ``?since=SEQ`` over the ``Last-Event-ID`` header; None: live only."""
    if "since" in request.query:
        return _seq(request.query["since"], "since")
    last = request.headers.get("Last-Event-ID", "").strip()
    return _seq(last, "Last-Event-ID") if last else None


async def _next(
    stream: Stream, stopping: asyncio.Event, gone: asyncio.Future[Any] | None = None
) -> list[Batch] | None:
    """The next batches (none after ``_KEEPALIVE`` of silence), or None once the server
    stops (or ``gone``, the reader, is done)."""
    if stopping.is_set() or (gone is not None and gone.done()):
        return None
    getting = asyncio.ensure_future(stream.next(_KEEPALIVE))
    stop = asyncio.ensure_future(stopping.wait())
    waits: set[asyncio.Future[Any]] = {getting, stop} if gone is None else {getting, stop, gone}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when the handler is cancelled: nothing may outlive it
        stop.cancel()
        if not getting.done():
            getting.cancel()
    if stopping.is_set() or getting.cancelled() or not getting.done():
        return None
    return getting.result()


async def _send(write: Awaitable[None], stream: Stream, stopping: asyncio.Event) -> bool:
    """Send; False if the reader cannot take it while it lagged or the server stops (then
    the connection is to be dropped: nothing more can reach that reader)."""
    sending = asyncio.ensure_future(write)
    if sending.done():
        sending.result()
        return True
    ended = asyncio.ensure_future(stream.subscription.ended.wait())
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((sending, ended, stop), return_when=asyncio.FIRST_COMPLETED)
        if not sending.done() and ended.done():
            await asyncio.wait((sending, stop), timeout=_STUCK)
    finally:
        ended.cancel()
        stop.cancel()
        if not sending.done():
            sending.cancel()
    if sending.done() and not sending.cancelled():
        sending.result()  # a hang-up raises here
        return True
    return False


@routes.get("/api/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Task events as Server-Sent Events: missed ones first (``Last-Event-ID`` or
    ``?since=SEQ``), then live. Ends when the reader lags too far behind, when it hangs up
    (normal: nothing to log), or at once when the server stops."""
    runtime = request.app[RUNTIME]
    wanted = _filter(request.query)
    since = _since(request)
    stopping = request.app[SHUTDOWN]
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    try:
        # Subscribe before the answer starts, so a node that cannot is still a JSON error.
        async with runtime.stream(since) as stream:
            _bound_socket(request)
            await resp.prepare(request)
            while (batches := await _next(stream, stopping)) is not None:
                data = b"".join(_sse_batch(b, wanted) for b in batches) if batches else None
                if data is None:
                    data = b": keepalive\n\n"
                if data and not await _send(resp.write(data), stream, stopping):
                    _drop(request)
                    break
                if batches and batches[-1].lagged:
                    break
                if not stream.replaying:
                    await asyncio.sleep(_LINGER)
    except ConnectionError:  # the reader hung up: ClientConnectionResetError among them
        log.debug("an event stream's reader hung up")
    return resp


def _bound_socket(request: web.Request) -> None:
    sock = None if request.transport is None else request.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)


def _drop(request: web.Request) -> None:
    """Cut a connection nothing can be written to any more (the reader does not read)."""
    if request.transport is not None:
        request.transport.abort()


# -- WebSocket -------------------------------------------------------------------------------


def _ws_batch(batch: Batch, wanted: Filter) -> Iterable[str]:
    return (_edge_json(i) for i in batch.items if wanted(i) or i.kind == "lagged")


async def _commands(
    ws: web.WebSocketResponse, on_filter: Callable[[Filter], Awaitable[None]]
) -> None:
    """Read the reader's messages: ``{"op": "subscribe", "queue": [...], "type": [...],
    "task": [...]}`` sets the filter (an empty one: every event), ``{"op": "unsubscribe"}``
    stops events until the next subscribe. Anything else gets an ``error`` message."""
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue
        try:
            command = json.loads(msg.data)
            if not isinstance(command, dict):
                raise ValueError("a command is a JSON object")
            await on_filter(_command_filter(command))
        except (ValueError, InvalidInput) as exc:
            await ws.send_json({"kind": "error", "message": str(exc)})


_NOTHING = Filter(frozenset(), frozenset(), frozenset())  # matches no event


def _command_filter(command: dict[str, Any]) -> Filter:
    op = command.get("op")
    if op == "unsubscribe":
        return _NOTHING
    if op != "subscribe":
        raise InvalidInput(f"unknown op {op!r}: subscribe or unsubscribe")

    def strings(name: str) -> list[str]:
        value = command.get(name, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInput(f"{name} must be a string or a list of strings")
        return value

    return Filter.of(strings("queue"), strings("type"), strings("task"))


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Task events over a WebSocket: the same as the SSE stream (filters and ``?since=SEQ``
    in the query), one JSON text message per event; the reader changes its filter with
    ``subscribe``/``unsubscribe`` messages. Pings every ``_KEEPALIVE`` seconds; closes with
    1001 (going away) when the server stops, 1008 once the reader lagged."""
    runtime = request.app[RUNTIME]
    wanted = [_filter(request.query)]
    since = _since(request)
    stopping = request.app[SHUTDOWN]
    ws = web.WebSocketResponse(heartbeat=_KEEPALIVE, max_msg_size=64 * 1024)
    async with runtime.stream(since) as stream:
        _bound_socket(request)
        await ws.prepare(request)

        async def set_filter(f: Filter) -> None:
            wanted[0] = f
            await ws.send_json({"kind": "subscribed", "filter": f.to_json()})

        reader = asyncio.ensure_future(_commands(ws, set_filter))
        code = WSCloseCode.GOING_AWAY
        try:
            while (batches := await _next(stream, stopping, reader)) is not None:
                for batch in batches:
                    for text in _ws_batch(batch, wanted[0]):
                        if not await _send(ws.send_str(text), stream, stopping):
                            _drop(request)
                            return ws
                if batches and batches[-1].lagged:
                    code = WSCloseCode.POLICY_VIOLATION
                    break
                if not stream.replaying:
                    await asyncio.sleep(_LINGER)
        except ConnectionError:
            log.debug("a WebSocket reader hung up")
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await reader
        if not ws.closed:
            message = b"lagged" if code == WSCloseCode.POLICY_VIOLATION else b"server stopping"
            with contextlib.suppress(ConnectionError):
                await ws.close(code=code, message=message)
    return ws
