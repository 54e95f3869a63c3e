"""Readiness: /ready answers 503 while this node cannot write, and 200 again once it can;
/health stays a liveness check. A batch that fails because the database cannot be used fails
as a whole, at once, with the 503 kind of error."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config

from actorq.errors import StorageUnavailable
from actorq.http.app import make_app
from actorq.journal.sqlite import SqliteJournal
from actorq.model import NewTask, TaskState
from actorq.runtime import Runtime


@pytest.fixture
async def sqlite_node(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A node on SQLite that gives up waiting for the write lock after 0.2 s."""
    path = tmp_path / "actorq.db"
    runtime = Runtime(
        node_config(f"sqlite:///{path}"),
        make_registry(Gates()),
        journal=SqliteJournal(str(path), busy_timeout=0.2),
    )
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
def write_lock(sqlite_node: Runtime) -> Iterator[sqlite3.Connection]:
    """Another connection to the node's database (as a backup tool or a stray ``sqlite3``
    shell would be), able to hold the write lock; it lets go at the end."""
    assert isinstance(sqlite_node.journal, SqliteJournal)
    holder = sqlite3.connect(sqlite_node.journal.path, isolation_level=None)
    yield holder
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()


async def get(client: TestClient, path: str) -> tuple[int, Any]:
    resp = await client.get(path)
    return resp.status, await resp.json()


async def test_ready_is_503_while_the_writer_cannot_write_and_200_after_it_recovers(
    sqlite_node: Runtime,
    write_lock: sqlite3.Connection,
    aiohttp_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client: TestClient = await aiohttp_client(make_app(sqlite_node))
    assert (await get(client, "/ready"))[0] == 200

    write_lock.execute("BEGIN IMMEDIATE")
    with caplog.at_level(logging.WARNING, "actorq"):
        results = await asyncio.gather(
            *(sqlite_node.submit([NewTask(type="echo")]) for _ in range(5)),
            return_exceptions=True,
        )
    assert all(isinstance(r, StorageUnavailable) for r in results), results
    assert not any("in halves" in r.message for r in caplog.records), "no retry of an outage"

    status, body = await get(client, "/ready")
    assert status == 503, body
    assert body["error"]["code"] == "not_ready"
    assert "journal_writer" in body["error"]["message"]
    assert (await get(client, "/health"))[0] == 200, "alive, though not ready"
    # Its health probe waits 0.2 s for the lock: past the timeout, the writer counts as down.
    slow = await sqlite_node.readiness(timeout=0.05)
    assert not slow.ok
    assert "journal_writer does not answer in time" in slow.reasons

    write_lock.execute("ROLLBACK")
    status, body = await get(client, "/ready")
    assert status == 200, body
    [task] = await sqlite_node.submit([NewTask(type="echo")])
    assert (await sqlite_node.wait_for(task.id, timeout=15)).state is TaskState.SUCCEEDED


async def test_ready_reports_the_journal_seq_on_both_backends(
    node: Runtime, client: TestClient
) -> None:
    [task] = await node.submit([NewTask(type="echo")])
    await node.wait_for(task.id, timeout=15)
    status, body = await get(client, "/ready")
    assert status == 200, body
    assert body["status"] == "ready"
    assert body["journal_seq"] >= 1
    readiness = await node.readiness()
    assert readiness.ok
    assert readiness.reasons == ()


async def test_a_stopped_node_is_not_ready(node: Runtime) -> None:
    await node.stop()
    readiness = await node.readiness()
    assert not readiness.ok
    assert readiness.reasons == ("the node is not running",)


@pytest.mark.postgres
async def test_postgres_out_of_reach_fails_the_batch_as_a_whole_and_ready_follows(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from test_postgres_outage import Relay, through  # the TCP relay a test can cut

    target = urllib.parse.urlsplit(postgres_url)
    relay = Relay(target.hostname or "127.0.0.1", target.port or 5432)
    await relay.start()
    node = Runtime(node_config(through(postgres_url, relay.port)), make_registry(Gates()))
    await node.start()
    try:
        assert (await node.readiness()).ok
        await relay.cut()
        with caplog.at_level(logging.WARNING, "actorq"):
            results = await asyncio.gather(
                *(node.submit([NewTask(type="echo")]) for _ in range(5)),
                return_exceptions=True,
            )
        assert all(isinstance(r, StorageUnavailable) for r in results), results
        assert not any("in halves" in r.message for r in caplog.records)
        down = await node.readiness()
        assert not down.ok
        assert any(r.startswith("journal_writer") for r in down.reasons), down

        await relay.restore()
        assert (await node.readiness()).ok, "the writer's probe sees the database back"
        [task] = await node.submit([NewTask(type="echo")])
        assert (await node.wait_for(task.id, timeout=15)).state is TaskState.SUCCEEDED
    finally:
        await node.stop()
        await relay.close()
