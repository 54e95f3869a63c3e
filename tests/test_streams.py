"""Live streams that resume: SSE with ids and WebSocket, on both backends, read by real aiohttp
clients; each resumed stream's seqs are compared with the journal's (no gap, none twice)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config
from procs import Server, api, until

from actorq.model import is_control
from actorq.runtime import Runtime
from actorq.wire import SseMessage, sse_messages

EVENTS = "/api/v1/events"
TASKS = "/api/v1/tasks"


async def journal_seqs(node: Runtime, after: int = 0) -> list[int]:
    """The seqs of the journal's task events after ``after``, in seq order."""
    return [e.seq async for e in node.journal.events(after) if not is_control(e.task_id)]


async def submit_and_finish(node: Runtime, client: TestClient, n: int, **task: Any) -> list[str]:
    body = [{"type": "echo", "payload": i, **task} for i in range(n)]
    resp = await client.post(TASKS, json=body)
    assert resp.status == 201, await resp.text()
    ids = [t["id"] for t in (await resp.json())["tasks"]]
    for task_id in ids:
        await node.wait_for(task_id, timeout=15)
    return ids


async def read_sse(resp: aiohttp.ClientResponse, until: int) -> AsyncIterator[SseMessage]:
    """The stream's messages until one with id ``until`` or later (or a ``lagged``)."""
    async with asyncio.timeout(20):
        async for message in sse_messages(resp.content):
            yield message
            if message.event == "lagged" or (message.id and int(message.id) >= until):
                return


async def test_sse_resumes_with_last_event_id_after_the_connection_is_killed(
    node: Runtime, client: TestClient
) -> None:
    got: list[int] = []
    resp = await client.get(EVENTS)
    assert resp.status == 200
    await submit_and_finish(node, client, 4)
    head = (await journal_seqs(node))[-1]
    async for message in read_sse(resp, head):
        item = json.loads(message.data)
        assert message.id == str(item["seq"])
        assert message.event == item["kind"]
        got.append(item["seq"])
        if len(got) == 5:  # kill it mid-stream, with events still on their way
            break
    resp.close()
    last_id = got[-1]
    await submit_and_finish(node, client, 4)  # committed while nobody listens
    head = (await journal_seqs(node))[-1]
    resp = await client.get(EVENTS, headers={"Last-Event-ID": str(last_id)})
    assert resp.status == 200
    async for message in read_sse(resp, head):
        got.append(int(message.id or 0))
    resp.close()
    expected = await journal_seqs(node, got[0] - 1)
    assert sorted(got) == expected  # every task event, from the first one received on
    assert len(set(got)) == len(got)  # none twice


async def test_sse_since_replays_the_journal_then_goes_on_live_with_filters(
    node: Runtime, client: TestClient
) -> None:
    a = await submit_and_finish(node, client, 2, queue="a")
    await submit_and_finish(node, client, 2, queue="b")
    resp = await client.get(EVENTS, params={"since": "0", "queue": "a"})
    assert resp.status == 200
    live = await submit_and_finish(node, client, 1, queue="a")
    await submit_and_finish(node, client, 1, queue="b")
    head = (await journal_seqs(node))[-1]
    items: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        async for message in sse_messages(resp.content):
            items.append(json.loads(message.data))
            if items[-1]["task_id"] == live[0] and items[-1]["kind"] == "succeeded":
                break
    resp.close()
    assert {i["queue"] for i in items} == {"a"}
    assert {i["task_id"] for i in items} == {*a, *live}
    mine = [e.seq async for e in node.journal.events() if e.task_id in {*a, *live}]
    assert [i["seq"] for i in items] == mine
    assert head >= mine[-1]
    # the type and task filters, comma-separated or repeated
    one = a[0]
    resp = await client.get(EVENTS, params=[("since", "0"), ("task", f"{one},nope")])
    kinds = []
    async with asyncio.timeout(20):
        async for message in sse_messages(resp.content):
            item = json.loads(message.data)
            assert item["task_id"] == one
            kinds.append(item["kind"])
            if item["kind"] == "succeeded":
                break
    resp.close()
    assert kinds[0] == "submitted"
    resp = await client.get(EVENTS, params={"since": "0", "type": "no-such-type"})
    assert resp.status == 200
    with pytest.raises(TimeoutError):  # nothing matches: only keepalives would come
        async with asyncio.timeout(0.5):
            await resp.content.readline()
    resp.close()


async def test_a_resume_while_tasks_keep_coming_has_no_gap_and_nothing_twice(
    node: Runtime, client: TestClient
) -> None:
    """The hand-over from the journal to the live feed, with commits landing all along."""
    await submit_and_finish(node, client, 5)

    async def keep_submitting() -> list[str]:
        ids = []
        for _ in range(15):
            ids += await submit_and_finish(node, client, 4)
        return ids

    writer = asyncio.ensure_future(keep_submitting())
    got: list[int] = []

    async def read(resp: aiohttp.ClientResponse, stop_after: int | None) -> None:
        async for message in sse_messages(resp.content):
            got.append(int(message.id or 0))
            if len(got) == stop_after:
                return  # drop it while the writer goes on

    async def everything_came() -> bool:
        return writer.done() and set(got) >= set(await journal_seqs(node))

    try:
        resp = await client.get(EVENTS, params={"since": "0"})
        await asyncio.wait_for(read(resp, 40), 30)
        resp.close()
        resp = await client.get(EVENTS, params={"since": str(got[-1])})
        reading = asyncio.ensure_future(read(resp, None))
        await until(everything_came, timeout=30)
        reading.cancel()
        resp.close()
    finally:
        await writer
    assert len(set(got)) == len(got)
    assert sorted(got) == await journal_seqs(node)


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"since": "x"}, {}), ({"since": "-1"}, {}), ({}, {"Last-Event-ID": "seven"})],
)
async def test_a_bad_resume_point_is_a_json_400(
    client: TestClient, params: dict[str, str], headers: dict[str, str]
) -> None:
    for path in (EVENTS, "/ws"):
        resp = await client.get(path, params=params, headers=headers)
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_input"


async def test_websocket_resumes_and_changes_its_filter_on_the_open_socket(
    node: Runtime, client: TestClient
) -> None:
    first = await submit_and_finish(node, client, 3)
    head = (await journal_seqs(node))[-1]
    got: list[int] = []
    async with client.ws_connect("/ws", params={"since": "0"}) as ws, asyncio.timeout(20):
        while not got or got[-1] < head:
            message = await ws.receive_json()
            got.append(message["seq"])
            if len(got) == 4:
                break  # and drop the socket mid-stream
    await submit_and_finish(node, client, 3)
    head = (await journal_seqs(node))[-1]
    async with client.ws_connect("/ws", params={"since": str(got[-1])}) as ws:
        async with asyncio.timeout(20):
            while got[-1] < head:
                got.append((await ws.receive_json())["seq"])
        assert got == await journal_seqs(node)
        # only one task's events from now on
        await ws.send_json({"op": "subscribe", "task": [first[0]]})
        reply = await asyncio.wait_for(ws.receive_json(), 10)
        assert reply == {"kind": "subscribed",
                         "filter": {"queue": [], "type": [], "task": [first[0]]}}  # fmt: skip
        other = await submit_and_finish(node, client, 1)
        await ws.send_json({"op": "subscribe", "task": other})
        reply = await asyncio.wait_for(ws.receive_json(), 10)
        assert reply["filter"]["task"] == other
        await ws.send_json({"op": "unsubscribe"})
        assert (await asyncio.wait_for(ws.receive_json(), 10))["filter"]["task"] == []
        await ws.send_json({"op": "dance"})
        assert (await asyncio.wait_for(ws.receive_json(), 10))["kind"] == "error"
        await ws.send_json({"op": "subscribe"})  # every event again
        assert (await asyncio.wait_for(ws.receive_json(), 10))["kind"] == "subscribed"
        last = await submit_and_finish(node, client, 1)
        async with asyncio.timeout(20):
            while (message := await ws.receive_json())["task_id"] != last[0]:
                pass
        assert message["kind"] == "submitted"


async def test_websocket_filtered_by_task_carries_only_that_task(
    node: Runtime, client: TestClient
) -> None:
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"op": "subscribe", "type": ["echo"], "queue": "only"})
        assert (await asyncio.wait_for(ws.receive_json(), 10))["kind"] == "subscribed"
        await submit_and_finish(node, client, 2)  # default queue: filtered out
        (mine,) = await submit_and_finish(node, client, 1, queue="only")
        async with asyncio.timeout(20):
            kinds = []
            while not kinds or kinds[-1] != "succeeded":
                message = await ws.receive_json()
                assert message["task_id"] == mine
                kinds.append(message["kind"])
    assert kinds[0] == "submitted"

    async def unsubscribed() -> bool:  # the reader closed: its handler ends at once
        return await node.live_subscribers() == 0

    await until(unsubscribed, timeout=5)  # well before a keepalive (15 s) would notice


async def test_a_lagging_reader_gets_the_seq_to_resume_from_and_resumes_without_gap(
    node: Runtime, client: TestClient
) -> None:
    async with node.live_events(size=4) as feed:
        await submit_and_finish(node, client, 3)  # 9 events or so: more than 4
        got = [(await feed.get())["seq"] for _ in range(4)]
        lagged = await feed.get()
    assert lagged == {"kind": "lagged", "seq": got[-1]}
    assert await node.live_subscribers() == 0  # the feed dropped it
    head = (await journal_seqs(node))[-1]
    async with node.stream(lagged["seq"]) as stream, asyncio.timeout(20):
        while got[-1] < head:
            for batch in await stream.next(1.0):
                got.extend(i.seq for i in batch.items)
    assert got == await journal_seqs(node)


@pytest.fixture
async def small_buffer(
    database_url: str, aiohttp_client: Any
) -> AsyncIterator[tuple[Runtime, TestClient]]:
    """A node whose stream readers may have only 5 events waiting."""
    from actorq.http.app import make_app

    node = Runtime(node_config(database_url, stream_buffer=5), make_registry(Gates()))
    await node.start()
    yield node, await aiohttp_client(make_app(node))
    await node.stop()


async def test_an_sse_reader_past_its_buffer_is_told_where_to_resume_and_resumes(
    small_buffer: tuple[Runtime, TestClient],
) -> None:
    node, client = small_buffer
    resp = await client.get(EVENTS)
    await submit_and_finish(node, client, 10)  # one commit of 10 submitted events: past 5
    got: list[int] = []
    async with asyncio.timeout(20):
        async for message in sse_messages(resp.content):
            if message.event == "lagged":
                lagged = json.loads(message.data)
                break
            got.append(int(message.id or 0))
        assert await resp.content.read() == b""  # the server ended the stream
    assert len(got) <= 5
    assert lagged == {"kind": "lagged", "seq": got[-1]}
    head = (await journal_seqs(node))[-1]
    while got[-1] < head:  # each resume may lag again: 5 at a time, on to the head
        resp = await client.get(EVENTS, params={"since": str(got[-1])})
        async for message in read_sse(resp, head):
            if message.event != "lagged":
                got.append(int(message.id or 0))
        resp.close()
    assert got == await journal_seqs(node, got[0] - 1)


async def test_a_websocket_reader_past_its_buffer_gets_lagged_and_close_1008(
    small_buffer: tuple[Runtime, TestClient],
) -> None:
    node, client = small_buffer
    async with client.ws_connect("/ws") as ws:
        await submit_and_finish(node, client, 10)
        seqs = []
        async with asyncio.timeout(20):
            while (message := await ws.receive_json())["kind"] != "lagged":
                seqs.append(message["seq"])
            closing = await ws.receive()
    assert message == {"kind": "lagged", "seq": seqs[-1]}
    assert closing.type is WSMsgType.CLOSE
    assert closing.data == aiohttp.WSCloseCode.POLICY_VIOLATION


async def test_websocket_closes_with_going_away_when_the_server_stops(
    node: Runtime, aiohttp_client: Any
) -> None:
    from actorq.http.app import make_app

    client = await aiohttp_client(make_app(node))
    ws = await client.ws_connect("/ws")
    receiving = asyncio.ensure_future(ws.receive())  # a reader answers the close at once
    await client.server.close()  # the app's on_shutdown ends streams first
    message = await asyncio.wait_for(receiving, 10)
    assert message.type is WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.GOING_AWAY
    await ws.close()


# -- a cluster: another real node process -----------------------------------------------------


@pytest.mark.postgres
@pytest.mark.slow
async def test_events_another_node_process_writes_appear_in_this_nodes_stream(
    postgres_url: str, tmp_path: Path, servers: list[Server], aiohttp_client: Any
) -> None:
    other = Server.command(tmp_path, "serve", "other", "--database-url", postgres_url)
    servers.append(other)
    await other.ready()
    # This node serves a queue nobody uses: every task event comes from the other process.
    node = Runtime(node_config(postgres_url, node="this", queues=("unused",)),
                   make_registry(Gates()))  # fmt: skip
    await node.start()
    try:
        from actorq.http.app import make_app

        client = await aiohttp_client(make_app(node))
        resp = await client.get(EVENTS)
        created = await api("POST", f"{other.url}{TASKS}", [{"type": "echo"}] * 5)
        ids = {t["id"] for t in created["tasks"]}
        for task_id in ids:
            await node.wait_for(task_id, timeout=20)
        head = (await journal_seqs(node))[-1]
        seen: dict[int, dict[str, Any]] = {}
        async for message in read_sse(resp, head):
            seen[int(message.id or 0)] = json.loads(message.data)
            if len(seen) == 3:
                break
        resp.close()
        resp = await client.get(EVENTS, headers={"Last-Event-ID": str(max(seen))})
        async for message in read_sse(resp, head):
            assert int(message.id or 0) not in seen
            seen[int(message.id or 0)] = json.loads(message.data)
        resp.close()
        assert sorted(seen) == await journal_seqs(node, min(seen) - 1)
        submitted = [i for i in seen.values() if i["kind"] == "submitted"]
        assert {i["task_id"] for i in submitted} == ids
        assert {i["node"] for i in submitted} == {"other"}
    finally:
        await node.stop()
