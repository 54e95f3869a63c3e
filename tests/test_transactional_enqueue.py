"""Enqueue inside the caller's own PostgreSQL transaction: the task exists iff it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

import actorq
from actorq.errors import TaskNotFound
from actorq.journal.postgres import split_url

pytestmark = pytest.mark.postgres


def make_app(url: str) -> actorq.App:
    # A fallback poll slower than any wait here: the node must hear of the task at commit.
    app = actorq.App(database_url=url, concurrency=2, node="txn-node", poll_seconds=60)

    @app.task("welcome")
    async def welcome(payload: Any) -> str:
        return f"welcome {payload['user']}"

    return app


@pytest.fixture
async def started(postgres_url: str) -> AsyncIterator[tuple[actorq.App, asyncpg.Connection]]:
    """A running app, and the caller's own connection to the same database."""
    app = make_app(postgres_url)
    dsn, _ = split_url(postgres_url)
    async with app:
        await app.start()
        conn = await asyncpg.connect(dsn)
        try:
            yield app, conn
        finally:
            await conn.close()


async def test_a_task_enqueued_in_a_committed_transaction_runs(
    started: tuple[actorq.App, asyncpg.Connection],
) -> None:
    app, conn = started
    await conn.execute("CREATE TEMP TABLE users (name text)")
    async with conn.transaction():
        await conn.execute("INSERT INTO users VALUES ('ada')")
        task = await app.enqueue("welcome", {"user": "ada"}, connection=conn)
        # not visible to anyone else before the commit
        with pytest.raises(TaskNotFound):
            await app.get(task.id)
    done = await app.wait_for(task.id, timeout=10)
    assert done.result == "welcome ada"
    assert done.started_at is not None
    assert done.started_at - done.created_at < 5, "woken by the commit's notice"
    assert await conn.fetchval("SHOW search_path") == '"$user", public'


async def test_a_task_enqueued_in_a_rolled_back_transaction_never_exists(
    started: tuple[actorq.App, asyncpg.Connection],
) -> None:
    app, conn = started
    tx = conn.transaction()
    await tx.start()
    task = await app.enqueue("welcome", {"user": "bob"}, connection=conn)
    await tx.rollback()
    with pytest.raises(TaskNotFound):
        await app.get(task.id)
    head = await app.runtime.journal.head()  # type: ignore[union-attr]
    assert head.journal_seq == 0, "nothing of it reached the journal"


async def test_transactional_enqueue_outside_a_transaction_is_refused(
    started: tuple[actorq.App, asyncpg.Connection],
) -> None:
    app, conn = started
    with pytest.raises(actorq.InvalidInput, match="transaction"):
        await app.enqueue("welcome", {"user": "x"}, connection=conn)


async def test_transactional_enqueue_on_sqlite_is_refused(tmp_path: Any) -> None:
    app = make_app(f"sqlite:///{tmp_path}/x.db")
    async with app:
        with pytest.raises(actorq.InvalidInput, match="PostgreSQL"):
            await app.enqueue("welcome", {"user": "x"}, connection=object())
