"""A batch of submissions larger than ``pg_submit.PART`` goes to PostgreSQL in parts, one
statement each, all in one transaction: each part is sent while the client builds the next.
The batch still commits whole or not at all, answers in its order, and replays to what it
answered."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest
from conftest import PG_DSN

import actorq
import actorq.journal.pg_submit as pg_submit
import actorq.lifecycle as lifecycle
from actorq.errors import QueueFull
from actorq.journal import journal_from_url
from actorq.journal.base import ConfigureQueue, Submit
from actorq.model import NewTask, TaskState
from actorq.queues import parse_patch

pytestmark = pytest.mark.postgres


async def test_a_batch_in_parts_is_one_transaction_that_answers_in_order(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_submit, "PART", 3)
    journal = journal_from_url(postgres_url)
    await journal.open()
    try:
        at = time.time()
        first = [NewTask("job", {"i": i}) for i in range(5)]
        second = [NewTask("job", {"i": i}, run_at=at + 3600, queue="later") for i in range(3)]
        await journal.run([Submit([NewTask("warm")], at, "node-1")])  # opens its connection
        sent: list[str] = []
        own = journal._submitter._conn  # type: ignore[attr-defined]
        own.add_query_logger(lambda record: sent.append(record.query))
        outcomes = await journal.run(
            [Submit(first, at, "node-1"), Submit(second, at, "node-2", "tok")]
        )
        await asyncio.sleep(0)  # asyncpg calls query loggers soon after the query
        assert [q for q in sent if "submit_rows" in q] == [sent[1]] * 3  # 8 tasks, parts of 3
        assert sent[0] == "BEGIN;", sent
        assert sent[-1] == "COMMIT;", sent
        answered = [t for o in outcomes for t in o.unwrap()]
        assert [t.id for t in answered] == [n.id for n in first + second]
        assert [t.state for t in answered] == [TaskState.QUEUED] * 5 + [TaskState.SCHEDULED] * 3
        seqs = [t.seq for t in answered]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 8
        events = [e for t in answered for e in await journal.history(t.id)]
        assert [e.actor for e in events] == ["node-1"] * 5 + ["tok"] * 3
        assert events == [c.event for o in outcomes for c in o.changes]
        stored = await journal.get_many([t.id for t in answered])
        assert [stored[t.id] for t in answered] == answered
        assert lifecycle.fold(events) == {t.id: t for t in answered}
    finally:
        await journal.close()


async def test_a_gate_in_a_later_part_sends_the_whole_batch_down_the_general_path(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first part was written when the third meets a queue with a max_depth: all of it
    goes back, and the general path refuses the batch whole, saying why."""
    monkeypatch.setattr(pg_submit, "PART", 2)
    journal = journal_from_url(postgres_url)
    await journal.open()
    try:
        at = time.time()
        change = ConfigureQueue("small", parse_patch({"max_depth": 1}), at, "test")
        (outcome,) = await journal.run([change])
        outcome.unwrap()
        batch = [NewTask("job") for _ in range(4)]
        batch += [NewTask("job", queue="small"), NewTask("job", queue="small")]
        (outcome,) = await journal.run([Submit(batch, at, "node-1")])
        with pytest.raises(QueueFull):
            outcome.unwrap()
        assert await journal.counts() == {}
        assert await journal.get_many([new.id for new in batch]) == {}
        # Within the limit, the same path takes the batch whole.
        fits = [NewTask("job") for _ in range(4)] + [NewTask("job", queue="small")]
        (outcome,) = await journal.run([Submit(fits, at, "node-1")])
        assert len(outcome.unwrap()) == 5
        assert await journal.counts() == {
            ("default", TaskState.QUEUED): 4,
            ("small", TaskState.QUEUED): 1,
        }
    finally:
        await journal.close()


async def test_batches_in_parts_whose_connection_is_killed_are_written_once(
    postgres_url: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between or during its parts, a batch's transaction either committed whole
    (found so, and answered) or not at all (run again on another connection)."""
    monkeypatch.setattr(pg_submit, "PART", 4)
    name = f"actorq-test-{uuid.uuid4().hex[:12]}"
    client = actorq.App(database_url=f"{postgres_url}&application_name={name}")

    @client.task("a")
    async def handler(payload: Any) -> None:
        return None

    answered = []
    async with client:
        await client.enqueue("a")
        admin = await asyncpg.connect(PG_DSN)
        try:
            for i in range(8):
                killing = admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    name,
                )
                items = [{"type": "a", "payload": {"i": i, "k": k}} for k in range(13)]
                _, tasks = await asyncio.gather(killing, client.enqueue_many(items))
                answered += tasks
        finally:
            await admin.close()
    counts = dict(
        await db.fetch(
            "SELECT task_id, count(*) FROM journal WHERE kind = 'submitted' GROUP BY task_id"
        )
    )
    assert len(answered) == 8 * 13
    assert all(counts[t.id] == 1 for t in answered)
    assert len(counts) == 8 * 13 + 1
