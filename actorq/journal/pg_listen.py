"""The LISTEN side of PostgreSQL notices: a connection of its own that hears other nodes'
notices (work is ready, a task was cancelled, a queue changed) and hands them to the
runtime, and comes back with backoff if the connection drops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from actorq.errors import ActorqError, StorageError
from actorq.journal.base import Notice

log = logging.getLogger("actorq.journal.postgres")


class Listener:
    """LISTEN on ``channel``; notices whose origin is not ``origin`` go to ``on_notice``.
    ``translate`` and ``errors`` are the journal's driver-error translation."""

    def __init__(
        self,
        dsn: str,
        connect: dict[str, Any],
        channel: str,
        origin: str,
        keepalive: float,
        delays: tuple[float, float],
        timeout: float,
        translate: Callable[[Exception], ActorqError],
        errors: tuple[type[Exception], ...],
    ) -> None:
        self._dsn = dsn
        self._connect = connect
        self.channel = channel
        self._origin = origin
        self._keepalive = keepalive
        self._delays = delays
        self._timeout = timeout
        self._translate = translate
        self._errors = errors
        self._listen_conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, on_notice: Callable[[Notice], None]) -> None:
        lost = await self._listen(on_notice)
        self._task = asyncio.create_task(self._keep_listening(on_notice, lost),
                                         name="actorq-postgres-listener")  # fmt: skip

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_listen_conn()

    async def _listen(self, on_notice: Callable[[Notice], None]) -> asyncio.Event:
        lost = asyncio.Event()
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._timeout, **self._connect)
        except self._errors as exc:
            raise self._translate(exc) from exc
        self._listen_conn = conn
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self.channel, lambda *a: self._heard(on_notice, a[-1]))
        except self._errors as exc:
            await self._drop_listen_conn()
            raise self._translate(exc) from exc
        return lost

    async def _keep_listening(
        self, on_notice: Callable[[Notice], None], lost: asyncio.Event
    ) -> None:
        delay = self._delays[0]
        while True:
            try:
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._keepalive)
                    if not lost.is_set() and self._listen_conn is not None:
                        await self._listen_conn.fetchval("SELECT 1", timeout=self._keepalive)
            except self._errors as exc:
                log.warning("LISTEN connection failed: %r", exc)
            log.warning("lost the LISTEN connection on %s; reconnecting", self.channel)
            await self._drop_listen_conn()
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._delays[1])
                try:
                    lost = await self._listen(on_notice)
                    break
                except StorageError as exc:
                    log.warning("cannot LISTEN yet (retrying in %.1fs): %s", delay, exc)
            delay = self._delays[0]
            log.info("listening on %s again", self.channel)
            _deliver(on_notice, Notice("ready"))

    def _heard(self, on_notice: Callable[[Notice], None], payload: str) -> None:
        try:
            data = json.loads(payload)
            notice = Notice(str(data["kind"]), data.get("queue"), data.get("task_id"),
                            data.get("node"))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed notice: %r", payload)
            return
        if data.get("origin") != self._origin:
            _deliver(on_notice, notice)

    async def _drop_listen_conn(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), 5.0)
        except self._errors:
            conn.terminate()


def _deliver(on_notice: Callable[[Notice], None], notice: Notice) -> None:
    try:
        on_notice(notice)
    except Exception:
        log.exception("the notice handler failed on %r", notice)
