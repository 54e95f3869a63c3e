"""Concurrent callers of one journal (a process without a node) share a transaction, and each
still gets its own answer: a bad submission fails alone (both backends); a caller cancelled
before its turn writes nothing, a leader cancelled mid-commit leaves the others their answers
(SQLite, where the writer thread can be held at chosen points)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from actorq.errors import InvalidInput, TaskNotFound
from actorq.journal.base import Journal, Op, Outcome, Submit
from actorq.journal.sqlite import SqliteJournal
from actorq.model import NewTask, TaskState


@pytest.fixture
async def sqlite_journal(tmp_path: Path) -> AsyncIterator[SqliteJournal]:
    journal = SqliteJournal(str(tmp_path / "actorq.db"))
    await journal.open()
    yield journal
    await journal.close()


def submit(task: NewTask) -> Submit:
    return Submit([task], time.time(), "client:test")


def count_transactions(journal: Journal) -> list[int]:
    """How many operations each transaction of ``journal.run`` callers carried, from now on."""
    sizes: list[int] = []
    shared = journal._shared  # type: ignore[attr-defined]
    run_ops = shared._run_ops

    async def counted(ops: list[Op]) -> list[Outcome]:
        sizes.append(len(ops))
        return await run_ops(ops)

    shared._run_ops = counted
    return sizes


async def test_concurrent_submissions_share_transactions_and_each_gets_its_task(
    journal: Journal,
) -> None:
    sizes = count_transactions(journal)
    tasks = [NewTask("echo", payload={"n": i}) for i in range(30)]
    results = await asyncio.gather(*(journal.run([submit(t)]) for t in tasks))
    assert [r[0].unwrap()[0].id for r in results] == [t.id for t in tasks]
    assert sum(sizes) == 30
    assert len(sizes) < 30, sizes  # the first runs alone; those that waited, together
    stored = await journal.get_many([t.id for t in tasks])
    assert [stored[t.id].payload for t in tasks] == [{"n": i} for i in range(30)]
    assert {t.state for t in stored.values()} == {TaskState.QUEUED}


async def test_an_unstorable_submission_fails_alone_beside_twenty_concurrent_ones(
    journal: Journal,
) -> None:
    sizes = count_transactions(journal)
    valid = [NewTask("echo", payload={"n": i}) for i in range(20)]
    bad = NewTask("echo", priority=2**63)  # beyond what either database's integers hold
    results = await asyncio.gather(
        *(journal.run([submit(t)]) for t in valid[:10]),
        journal.run([submit(bad)]),
        *(journal.run([submit(t)]) for t in valid[10:]),
        return_exceptions=True,
    )
    refused = results.pop(10)
    assert isinstance(refused, InvalidInput), refused
    assert all(isinstance(r, list) and r[0].error is None for r in results), results
    assert max(sizes) > 1, "they shared a transaction"
    stored = await journal.get_many([t.id for t in valid])
    assert sorted(stored) == sorted(t.id for t in valid)
    with pytest.raises(TaskNotFound):
        await journal.get(bad.id)


async def test_a_caller_cancelled_before_its_turn_writes_nothing(
    sqlite_journal: SqliteJournal, tmp_path: Path
) -> None:
    journal = sqlite_journal
    # Another connection holds the write lock: the first caller's transaction waits for it.
    other = sqlite3.connect(tmp_path / "actorq.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    first, second, third = NewTask("echo"), NewTask("echo"), NewTask("echo")
    try:
        running = asyncio.ensure_future(journal.run([submit(first)]))
        await asyncio.sleep(0)  # it takes its turn, and waits on the lock in its transaction
        assert journal._shared._turn.locked()
        waiting = asyncio.ensure_future(journal.run([submit(second)]))
        for _ in range(5):
            await asyncio.sleep(0)  # it reaches the lock and waits there
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        other.execute("ROLLBACK")
        other.close()
    (outcome,) = await running
    assert outcome.unwrap()[0].id == first.id
    await journal.run([submit(third)])  # the next turn does not take the cancelled one along
    assert (await journal.get(first.id)).state is TaskState.QUEUED
    assert (await journal.get(third.id)).state is TaskState.QUEUED
    with pytest.raises(TaskNotFound):
        await journal.get(second.id)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


async def test_a_leader_cancelled_mid_commit_leaves_the_others_their_answers(
    sqlite_journal: SqliteJournal,
) -> None:
    journal = sqlite_journal
    # Gates on the writer thread hold transactions back at chosen points: the first call
    # waits behind gate one; the batch of the two that waited for it, behind gate two.
    gate_one, gate_two = threading.Event(), threading.Event()
    held = [asyncio.ensure_future(journal._on_writer(lambda: gate_one.wait(10)))]
    first, leader, other = NewTask("echo"), NewTask("echo"), NewTask("echo")
    try:
        running = asyncio.ensure_future(journal.run([submit(first)]))
        await until(journal._shared._turn.locked)
        lead = asyncio.ensure_future(journal.run([submit(leader)]))
        follow = asyncio.ensure_future(journal.run([submit(other)]))
        await until(lambda: len(journal._shared._waiting) == 2)
        held.append(asyncio.ensure_future(journal._on_writer(lambda: gate_two.wait(10))))
        await asyncio.sleep(0)  # gate two is queued behind the first call's transaction
        gate_one.set()
        await running
        await until(lambda: bool(journal._shared._running))  # the leader runs the batch
        lead.cancel()
        with pytest.raises(asyncio.CancelledError):
            await lead
    finally:
        gate_one.set()
        gate_two.set()
        await asyncio.gather(*held)
    (outcome,) = await follow
    assert outcome.unwrap()[0].id == other.id
    # The batch was taken before the cancel: both committed, and the leader's task exists.
    assert (await journal.get(other.id)).state is TaskState.QUEUED
    assert (await journal.get(leader.id)).state is TaskState.QUEUED
