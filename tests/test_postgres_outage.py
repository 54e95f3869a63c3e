"""PostgreSQL goes away for a while and comes back: the node carries on, nothing it
acknowledged is lost.

The node reaches the database through a TCP relay that the test can cut (every connection
dropped, new ones refused, as while a server restarts) and restore, so the real server stays
up for the rest of the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse

import pytest
from nodes import Gates, make_registry, node_config

from actorq.errors import StorageError
from actorq.model import EventKind, NewTask, TaskState
from actorq.runtime import Runtime

pytestmark = pytest.mark.postgres


class Relay:
    """Forwards 127.0.0.1:port to the database; ``cut`` and ``restore`` it."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    async def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        await self.start()  # the same port again

    async def close(self) -> None:
        with contextlib.suppress(AssertionError):
            await self.cut()


def through(url: str, port: int) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urllib.parse.urlunsplit(
        parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
    )


async def test_a_node_rides_out_a_database_outage_and_loses_no_acknowledged_task(
    postgres_url: str, gates: Gates, caplog: pytest.LogCaptureFixture
) -> None:
    target = urllib.parse.urlsplit(postgres_url)
    relay = Relay(target.hostname or "127.0.0.1", target.port or 5432)
    await relay.start()
    url = through(postgres_url, relay.port)
    node = Runtime(node_config(url, node="outage", lease_seconds=2.0, poll_seconds=0.3),
                   make_registry(gates))  # fmt: skip
    await node.start()
    try:
        acked = [t.id for t in await node.submit([NewTask("echo", i) for i in range(20)])]
        for task_id in acked:
            await node.wait_for(task_id, timeout=10)
        # A task running when the database goes: its outcome cannot be written meanwhile.
        (running,) = await node.submit([NewTask("gate", {"gate": "across"})])
        acked.append(running.id)
        await gates.wait_started("across")

        with caplog.at_level(logging.WARNING, logger="actorq"):
            await relay.cut()
            with pytest.raises(StorageError):  # refused, not acknowledged: the caller knows
                await node.submit([NewTask("echo", "during")])
            gates.open("across")  # finishes while its outcome cannot be journaled
            await asyncio.sleep(1.0)  # the outage lasts a while: reconnects fail meanwhile
            await relay.restore()

            for _ in range(50):  # the pool reconnects on its own; no restart needed
                try:
                    after = [NewTask("echo", f"after {i}") for i in range(5)]
                    acked += [t.id for t in await node.submit(after)]
                    break
                except StorageError:
                    await asyncio.sleep(0.1)
            assert len(acked) == 26, "the node took work again once the database was back"

            for task_id in acked:
                done = await node.wait_for(task_id, timeout=30)
                assert done.state is TaskState.SUCCEEDED, task_id
        assert any(r.levelno >= logging.WARNING for r in caplog.records), "the outage is logged"

        # The task whose first outcome was lost ran again after its lease expired; every
        # other task ran once.
        kinds = [e.kind for e in await node.history(running.id)]
        assert kinds.count(EventKind.SUCCEEDED) == 1
        for task_id in acked[:20]:
            claims = [e for e in await node.history(task_id) if e.kind is EventKind.CLAIMED]
            assert len(claims) == 1
    finally:
        gates.open("across")
        await node.stop()
        await relay.close()
