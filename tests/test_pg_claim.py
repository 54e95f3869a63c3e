"""A lone claim on PostgreSQL runs as one statement (``journal.pg_claim``): it writes what the
general path writes, and steps aside for queues whose settings limit claims."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from actorq.audit import verify_projection
from actorq.journal import journal_from_url
from actorq.journal.base import Claim, ConfigureQueue, Submit
from actorq.journal.postgres import PostgresJournal, split_url
from actorq.model import EventKind, NewTask, Task, TaskState

pytestmark = pytest.mark.postgres
NODE, LEASE = "n1", 30.0


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[PostgresJournal]:
    journal = journal_from_url(postgres_url)
    assert isinstance(journal, PostgresJournal)
    await journal.open()
    yield journal
    await journal.close()


def logged(journal: PostgresJournal) -> list[str]:
    """The statements the journal's claim connection sends from now on."""
    conn = journal._claimer._conn
    assert conn is not None
    sent: list[str] = []
    conn.add_query_logger(lambda record: sent.append(record.query))
    return sent


async def claim(journal: PostgresJournal, workers: list[str], **kw: Any) -> list[Task]:
    (outcome,) = await journal.run([Claim(workers, 200.0, NODE, LEASE, **kw)])
    assert outcome.error is None
    claimed: list[Task] = outcome.value
    return claimed


async def test_a_lone_claim_is_one_statement_and_writes_what_a_replay_folds(
    pg: PostgresJournal,
) -> None:
    journal = pg
    new = [NewTask("job", {"n": n}, id=f"t{n}", priority=p)
           for n, p in enumerate([1, 9, 5, 9])]  # fmt: skip
    await journal.run([Submit(new, 100.0, NODE)])
    await claim(journal, ["w0"], types=["nothing-of-this-type"])  # opens the connection
    sent = logged(journal)
    first = await claim(journal, ["w1", "w2", "w3"], types=["job"])
    # Best first, FIFO within a priority: t1 and t3 (priority 9), then t2 (5).
    assert [(t.id, t.worker, t.state) for t in first] == [
        ("t1", "w1", TaskState.CLAIMED),
        ("t3", "w2", TaskState.CLAIMED),
        ("t2", "w3", TaskState.CLAIMED),
    ]
    await asyncio.sleep(0)  # asyncpg calls query loggers soon after the query
    assert len(sent) == 1
    assert "A lone claim in one statement" in sent[0]
    for task in first:
        stored = await journal.get(task.id)
        assert stored == task  # what the caller was told is what the projection holds
        (submitted, claimed) = await journal.history(task.id)
        assert submitted.kind is EventKind.SUBMITTED
        assert (claimed.kind, claimed.worker, claimed.seq) == (
            EventKind.CLAIMED, task.worker, task.seq,
        )  # fmt: skip
        assert claimed.data == {"lease_expires_at": 200.0 + LEASE, "held": True}
        assert (stored.lease_expires_at, stored.started_at, stored.attempt) == (
            230.0, None, 0,
        )  # fmt: skip
    assert len({t.seq for t in first}) == 3
    rest = await claim(journal, ["w4", "w5"], types=["job"])
    assert [t.id for t in rest] == ["t0"]
    assert await claim(journal, ["w6"]) == []
    report = await verify_projection(journal)
    assert report.matches, report.as_json()


async def test_a_lone_claim_of_a_limited_queue_goes_the_general_way(pg: PostgresJournal) -> None:
    journal = pg
    await journal.run([ConfigureQueue("q", {"concurrency": 1}, 90.0, NODE)])
    new = [NewTask("job", id=f"t{n}", queue="q") for n in range(3)]
    await journal.run([Submit(new, 100.0, NODE)])
    await claim(journal, ["w0"], queues=["elsewhere"])  # opens the connection
    sent = logged(journal)
    # The statement takes nothing and says why; the general path holds the limit.
    assert [t.id for t in await claim(journal, ["w1", "w2"], queues=["q"])] == ["t0"]
    await asyncio.sleep(0)
    assert len(sent) == 1
    assert await claim(journal, ["w3"], queues=["q"]) == []
    await journal.run([ConfigureQueue("q", {"paused": True}, 300.0, NODE)])
    assert await claim(journal, ["w4"], queues=["q"]) == []
    assert (await journal.get("t1")).state is TaskState.QUEUED
    assert (await verify_projection(journal)).matches


async def test_a_claim_whose_connection_drops_mid_statement_claims_the_general_way(
    postgres_url: str, pg: PostgresJournal
) -> None:
    journal = pg
    admin = await asyncpg.connect(split_url(postgres_url)[0])
    try:
        new = [NewTask("job", id=f"t{n}") for n in range(2)]
        await journal.run([Submit(new, 100.0, NODE)])
        await claim(journal, ["w0"], types=["nothing-of-this-type"])  # opens the connection
        own = journal._claimer._conn
        assert own is not None
        schema = split_url(postgres_url)[1]
        # Hold the tasks table so the claim's statement waits, then drop its connection.
        await admin.execute("BEGIN")
        await admin.execute(f'LOCK TABLE "{schema}".tasks IN ACCESS EXCLUSIVE MODE')
        claiming = asyncio.ensure_future(claim(journal, ["w1"], types=["job"]))
        waiting = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1"
        for _ in range(200):
            if await admin.fetchval(waiting, own.get_server_pid()) == "Lock":
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the claim never waited on the lock")
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", own.get_server_pid())
        await asyncio.sleep(0.2)  # it falls back, and waits on the lock again, on the pool
        assert not claiming.done()
        await admin.execute("ROLLBACK")
        assert [t.id for t in await asyncio.wait_for(claiming, 10)] == ["t0"]
        # The next lone claim opens a new connection of its own.
        assert [t.id for t in await claim(journal, ["w2"], types=["job"])] == ["t1"]
        assert journal._claimer._conn is not None
        assert journal._claimer._conn is not own
        assert (await verify_projection(journal)).matches
    finally:
        await admin.close()


async def test_a_claim_the_node_knows_limited_asks_nothing_first(pg: PostgresJournal) -> None:
    """The dispatcher's hint (``Claim.limited``): no lone statement, no unlimited read."""
    journal = pg
    await journal.run([ConfigureQueue("q", {"concurrency": 1}, 90.0, NODE)])
    await journal.run([Submit([NewTask("job", id=f"t{n}", queue="q") for n in range(2)],
                              100.0, NODE)])  # fmt: skip
    await claim(journal, ["w0"], queues=["elsewhere"])  # opens the claim connection
    own = logged(journal)
    pooled: list[str] = []
    assert journal._pool is not None
    async with journal._pool.acquire() as conn:  # the pool's only connection here
        conn.add_query_logger(lambda record: pooled.append(record.query))
    assert [t.id for t in await claim(journal, ["w1", "w2"], queues=["q"], limited=True)] == ["t0"]
    await asyncio.sleep(0)  # asyncpg calls query loggers soon after the query
    assert own == []
    assert not any("A claim's first read" in q for q in pooled)
    assert any("whose settings limit" in q for q in pooled)
    assert (await verify_projection(journal)).matches
