"""The journal contract: what every backend must do, run on SQLite and on PostgreSQL; then
what only PostgreSQL is for: several nodes racing on one database, NOTIFY, and tailing."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import actorq.journal.pg_tx as pg_tx
import actorq.journal.postgres as pg_module
import actorq.lifecycle as lifecycle
from actorq.errors import (
    DuplicateTask,
    InvalidInput,
    InvalidTransition,
    StorageError,
    TaskNotFound,
)
from actorq.journal import journal_from_url
from actorq.journal.base import (
    Append,
    Claim,
    ExtendLeases,
    Journal,
    Notice,
    Op,
    PromoteDue,
    ReapExpired,
    Start,
    Submit,
)
from actorq.journal.postgres import PostgresJournal, split_url
from actorq.journal.rows import migrations
from actorq.journal.sqlite import path_from_url
from actorq.model import (
    Event,
    EventKind,
    NewTask,
    Schedule,
    ScheduleTask,
    Task,
    TaskFilter,
    TaskState,
)
from actorq.queues import QueueSettings
from actorq.retry import RetryPolicy

T0 = 1_000.0
NODE = "node-a"
LEASE = 30.0
_S = TaskState
_K = EventKind


# -- helpers --------------------------------------------------------------------------------


async def one(journal: Journal, op: Op) -> Any:
    """Run one operation in a batch of its own; its value, or raise its error."""
    (outcome,) = await journal.run([op])
    return outcome.unwrap()


async def submit(journal: Journal, *tasks: NewTask, at: float = T0) -> list[Task]:
    created: list[Task] = await one(journal, Submit(tasks, at, NODE))
    return created


async def claim(
    journal: Journal,
    *workers: str,
    at: float = T0,
    queues: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    start: bool = True,
) -> list[Task]:
    """Claim tasks for ``workers`` and, unless ``start`` is false, start each one's handler
    (at the same instant): running tasks, as most tests want them."""
    claimed: list[Task] = await one(journal, Claim(workers, at, NODE, LEASE, queues, types))
    if not start:
        return claimed
    return [(await one(journal, begin(t, at, queues, types))).task for t in claimed]


def begin(
    task: Task,
    at: float,
    queues: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    worker: str | None = None,
) -> Start:
    """The start of a held task's handler, on the worker that claimed it unless told."""
    assert task.worker is not None
    return Start(task.id, task.worker, worker or task.worker, at, NODE, LEASE, queues, types)


def event(kind: EventKind, task: Task | str, at: float, **data: Any) -> Event:
    task_id = task if isinstance(task, str) else task.id
    worker = None if isinstance(task, str) else task.worker
    return Event(kind, task_id, at, NODE, data, worker=worker)


async def succeed(journal: Journal, task: Task, at: float, result: Any = "ok") -> Task:
    done: Task = await one(journal, Append(event(_K.SUCCEEDED, task, at, result=result)))
    return done


async def all_events(journal: Journal) -> list[Event]:
    return [e async for e in journal.events()]


async def projection(journal: Journal) -> dict[str, Task]:
    return {t.id: t.audit_view() async for t in journal.tasks()}


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Journal]:
    journal = journal_from_url(url)
    await journal.open()
    try:
        yield journal
    finally:
        await journal.close()


async def raw_execute(url: str, sql: str) -> None:
    """Run ``sql`` on the database behind ``url`` with the bare driver, past the journal."""
    if url.startswith("sqlite"):
        db = sqlite3.connect(path_from_url(url))
        try:
            db.execute(sql)
            db.commit()
        finally:
            db.close()
        return
    conn = await raw_pg(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def raw_pg(url: str) -> asyncpg.Connection:
    dsn, schema = split_url(url)
    return await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})


async def mixed_workload(journal: Journal) -> None:
    """Every kind of event, on a handful of tasks: what a replay has to reproduce."""
    rng = random.Random(7)
    policy = RetryPolicy(base=1.0)
    tasks = [NewTask("job", {"n": n}, priority=n % 3, max_attempts=2) for n in range(8)]
    later = NewTask("job", run_at=T0 + 5)
    keyed = NewTask("job", idempotency_key="once")
    await submit(journal, *tasks, later, keyed)
    running = await claim(journal, "w1", "w2", "w3", "w4", "w5", at=T0 + 1)
    await succeed(journal, running[0], T0 + 2, {"sum": 3})
    fail = lifecycle.decide_failure(
        running[1], error="boom", timed_out=False, at=T0 + 2, node=NODE, policy=policy, rng=rng
    )
    await one(journal, Append(fail, worker="w2", attempt=1))
    await one(journal, Append(event(_K.RELEASED, running[2], T0 + 2)))
    await one(journal, Append(event(_K.CANCELLED, running[3], T0 + 2, reason="stop")))
    await one(journal, Append(event(_K.CANCELLED, tasks[7].id, T0 + 2, reason="no")))
    await one(journal, Append(event(_K.RETRIED, tasks[7].id, T0 + 3)))
    await one(journal, PromoteDue(T0 + 10, NODE))
    await one(journal, ExtendLeases([running[4].id], T0 + 100))
    await one(journal, ReapExpired(T0 + 500, NODE))
    again = await claim(journal, *[f"w{n}" for n in range(6, 20)], at=T0 + 501)
    for n, task in enumerate(again):
        if n % 2:
            await succeed(journal, task, T0 + 502)
    await one(journal, ReapExpired(T0 + 1_000, NODE))


# -- submit and claim -----------------------------------------------------------------------


async def test_claim_takes_higher_priority_first_and_fifo_within_a_priority(
    journal: Journal,
) -> None:
    low1, low2 = NewTask("job", priority=0), NewTask("job", priority=0)
    high = NewTask("job", priority=5)
    low3 = NewTask("job", priority=0)
    await submit(journal, low1, low2, high)
    await submit(journal, low3, at=T0 + 1)

    order = [(await claim(journal, f"w{n}", at=T0 + 2))[0].id for n in range(4)]

    assert order == [high.id, low1.id, low2.id, low3.id]
    assert await claim(journal, "w9", at=T0 + 2) == []


async def test_claim_gives_one_task_to_each_worker_it_names(journal: Journal) -> None:
    first, second, third = (NewTask("job", queue=q) for q in ("a", "a", "b"))
    await submit(journal, first, second, third)

    claimed = await claim(journal, "node-a/0", "node-a/1", "node-a/2", at=T0 + 1, queues=["a"])

    assert [t.id for t in claimed] == [first.id, second.id]
    for task, worker in zip(claimed, ["node-a/0", "node-a/1"], strict=True):
        assert task.state is _S.RUNNING
        assert task.worker == worker
        assert task.attempt == 1
        assert task.started_at == T0 + 1
        assert task.lease_expires_at == T0 + 1 + LEASE
        assert await journal.get(task.id) == task
    assert [t.id for t in await claim(journal, "w", at=T0 + 1)] == [third.id]


async def test_claim_takes_only_the_task_types_the_node_serves(journal: Journal) -> None:
    theirs = NewTask("report", priority=9)
    ours = NewTask("job", queue="b")
    await submit(journal, theirs, ours)

    claimed = await claim(journal, "w0", "w1", at=T0 + 1, types=["job", "echo"])

    assert [t.id for t in claimed] == [ours.id]
    assert await claim(journal, "w0", at=T0 + 1, queues=["default"], types=["job"]) == []
    assert (await journal.get(theirs.id)).state is _S.QUEUED


async def test_submit_of_a_future_task_schedules_it_until_promoted(journal: Journal) -> None:
    soon, later = NewTask("job", run_at=T0 + 10), NewTask("job", run_at=T0 + 20)
    created = await submit(journal, soon, later)
    assert [t.state for t in created] == [_S.SCHEDULED, _S.SCHEDULED]
    assert await journal.next_due() == T0 + 10
    assert await claim(journal, "w", at=T0 + 15) == []

    promoted = await one(journal, PromoteDue(T0 + 15, NODE))

    assert [t.id for t in promoted] == [soon.id]
    assert (await journal.get(soon.id)).state is _S.QUEUED
    assert await journal.next_due() == T0 + 20
    assert [t.id for t in await claim(journal, "w", at=T0 + 16)] == [soon.id]


# -- transitions ----------------------------------------------------------------------------


async def test_append_records_the_outcome_of_a_running_task(journal: Journal) -> None:
    await submit(journal, NewTask("job"))
    (running,) = await claim(journal, "w1", at=T0 + 1)

    done = await succeed(journal, running, T0 + 2, {"answer": 42})

    assert done.state is _S.SUCCEEDED
    assert done.result == {"answer": 42}
    assert done.finished_at == T0 + 2
    assert done.lease_expires_at is None
    assert await journal.get(running.id) == done


async def test_an_outcome_from_a_worker_that_lost_its_lease_is_refused(journal: Journal) -> None:
    await submit(journal, NewTask("job"))
    (first,) = await claim(journal, "w1", at=T0)
    await one(journal, ReapExpired(T0 + LEASE + 1, NODE))
    (second,) = await claim(journal, "w2", at=T0 + LEASE + 2)
    assert (second.worker, second.attempt) == ("w2", 2)

    late = Append(event(_K.SUCCEEDED, first, T0 + LEASE + 3), worker="w1", attempt=1)
    with pytest.raises(InvalidTransition):
        await one(journal, late)
    same_worker_old_attempt = Append(event(_K.SUCCEEDED, second, T0 + 50), worker="w2", attempt=1)
    with pytest.raises(InvalidTransition):
        await one(journal, same_worker_old_attempt)

    assert await journal.get(first.id) == second
    current = Append(event(_K.SUCCEEDED, second, T0 + 50), worker="w2", attempt=2)
    assert (await one(journal, current)).state is _S.SUCCEEDED


async def test_a_finished_task_refuses_further_transitions(journal: Journal) -> None:
    await submit(journal, NewTask("job"))
    (running,) = await claim(journal, "w1")
    done = await succeed(journal, running, T0 + 1)

    with pytest.raises(InvalidTransition):
        await one(journal, Append(event(_K.CANCELLED, done.id, T0 + 2)))
    with pytest.raises(InvalidTransition):
        await succeed(journal, running, T0 + 2)
    with pytest.raises(TaskNotFound):
        await one(journal, Append(event(_K.CANCELLED, "no-such-task", T0 + 2)))
    assert await journal.get(done.id) == done


async def test_an_idempotency_key_is_held_by_one_live_task_and_freed_when_it_ends(
    journal: Journal,
) -> None:
    (holder,) = await submit(journal, NewTask("job", idempotency_key="k"))

    with pytest.raises(DuplicateTask) as raised:
        await submit(journal, NewTask("job", idempotency_key="k"), at=T0 + 1)
    assert raised.value.existing_id == holder.id
    with pytest.raises(DuplicateTask):  # two in one submission
        await submit(journal, *[NewTask("job", idempotency_key="twice") for _ in range(2)])
    (running,) = await claim(journal, "w", at=T0 + 1)
    assert running.id == holder.id
    with pytest.raises(DuplicateTask):  # running is still live
        await submit(journal, NewTask("job", idempotency_key="k"), at=T0 + 1)

    await succeed(journal, running, T0 + 2)
    (again,) = await submit(journal, NewTask("job", idempotency_key="k"), at=T0 + 3)
    assert again.idempotency_key == "k"
    assert again.id != holder.id


async def test_a_key_freed_earlier_in_a_batch_can_be_taken_later_in_it(journal: Journal) -> None:
    (old,) = await submit(journal, NewTask("job", idempotency_key="k"))
    new = NewTask("job", idempotency_key="k")

    cancel, resubmit = await journal.run(
        [Append(event(_K.CANCELLED, old, T0 + 1)), Submit([new], T0 + 1, NODE)]
    )

    assert cancel.unwrap().state is _S.CANCELLED
    assert [t.id for t in resubmit.unwrap()] == [new.id]


async def test_a_manual_retry_is_refused_while_a_newer_task_holds_its_key(
    journal: Journal,
) -> None:
    (old,) = await submit(journal, NewTask("job", idempotency_key="k"))
    await one(journal, Append(event(_K.CANCELLED, old, T0 + 1)))
    (newer,) = await submit(journal, NewTask("job", idempotency_key="k"), at=T0 + 2)
    other = NewTask("job")

    retry, alongside = await journal.run(
        [Append(event(_K.RETRIED, old.id, T0 + 3)), Submit([other], T0 + 3, NODE)]
    )

    assert isinstance(retry.error, DuplicateTask)
    assert retry.error.existing_id == newer.id
    assert [t.id for t in alongside.unwrap()] == [other.id]
    assert (await journal.get(old.id)).state is _S.CANCELLED


async def test_one_failing_operation_leaves_the_rest_of_its_batch_untouched(
    journal: Journal,
) -> None:
    await submit(journal, NewTask("job", idempotency_key="taken"))
    before = await journal.head()
    good1, good2 = NewTask("job"), NewTask("job")
    ops: list[Op] = [
        Submit([good1], T0 + 1, NODE),
        Submit([NewTask("job"), NewTask("job", idempotency_key="taken")], T0 + 1, NODE),
        Append(event(_K.SUCCEEDED, "no-such-task", T0 + 1)),
        Append(event(_K.SUCCEEDED, good1.id, T0 + 1)),  # queued, not running
        Submit([good2], T0 + 1, NODE),
    ]

    outcomes = await journal.run(ops)

    assert [type(o.error) for o in outcomes] == [
        type(None), DuplicateTask, TaskNotFound, InvalidTransition, type(None),
    ]  # fmt: skip
    assert [t.id for t in outcomes[0].value] == [good1.id]
    assert [t.id for t in outcomes[4].value] == [good2.id]
    written = [(e.kind, e.task_id) async for e in journal.events(before.journal_seq)]
    assert written == [(_K.SUBMITTED, good1.id), (_K.SUBMITTED, good2.id)]
    counts = await journal.counts()
    assert counts == {("default", _S.QUEUED): 3}


async def test_a_task_id_is_submitted_once_and_a_repeat_changes_nothing(
    journal: Journal,
) -> None:
    twice, first = NewTask("job"), NewTask("job")
    ops: list[Op] = [
        Submit([twice, twice], T0 + 1, NODE),  # the same task twice in one submission
        Submit([first], T0 + 1, NODE),
        Submit([NewTask("job"), first], T0 + 1, NODE),  # again, later in the same batch
    ]

    outcomes = await journal.run(ops)

    assert [type(o.error) for o in outcomes] == [InvalidInput, type(None), InvalidTransition]
    written = [(e.kind, e.task_id) async for e in journal.events()]
    assert written == [(_K.SUBMITTED, first.id)]
    assert [e.kind for e in await journal.history(first.id)] == [_K.SUBMITTED]


# -- timers: due work, leases ---------------------------------------------------------------


async def test_reaper_requeues_expired_leases_and_dead_letters_the_last_attempt(
    journal: Journal,
) -> None:
    retried, last = NewTask("job", max_attempts=2), NewTask("job", max_attempts=1)
    await submit(journal, retried, last)
    await claim(journal, "w1", "w2", at=T0)
    assert await journal.next_lease_expiry() == T0 + LEASE

    assert await one(journal, ReapExpired(T0 + LEASE - 1, NODE)) == []
    reaped = await one(journal, ReapExpired(T0 + LEASE, NODE))

    assert {t.id: t.state for t in reaped} == {retried.id: _S.QUEUED, last.id: _S.DEAD}
    assert [e.kind for e in await journal.history(retried.id)][-1] is _K.LEASE_EXPIRED
    dead = await journal.get(last.id)
    assert dead.error is not None
    assert dead.error.startswith("lease expired")
    assert [e.kind for e in await journal.history(last.id)][-1] is _K.DEAD_LETTERED
    assert await journal.next_lease_expiry() is None
    assert await one(journal, ReapExpired(T0 + 1_000, NODE)) == []


async def test_a_held_task_whose_lease_expires_goes_back_with_its_attempts_intact(
    journal: Journal,
) -> None:
    task = NewTask("job", max_attempts=1)
    await submit(journal, task)
    for n in range(3):  # more expiries than attempts: a handler that never ran spends none
        at = T0 + n * 100
        (held,) = await claim(journal, "w1", at=at, start=False)
        assert (held.state, held.attempt, held.started_at) == (_S.CLAIMED, 0, None)
        (back,) = await one(journal, ReapExpired(at + LEASE, NODE))
        assert (back.state, back.attempt, back.run_at) == (_S.QUEUED, 0, T0)
    (running,) = await claim(journal, "w1", at=T0 + 500)
    assert (running.state, running.attempt, running.started_at) == (_S.RUNNING, 1, T0 + 500)


async def test_a_start_gives_way_to_a_ready_task_of_higher_priority(journal: Journal) -> None:
    low, later_low = NewTask("job", priority=1), NewTask("job", priority=1)
    await submit(journal, low)
    (held,) = await claim(journal, "n/w0", at=T0 + 1, start=False)
    high = NewTask("job", priority=9)
    await submit(journal, high, later_low, at=T0 + 2)

    started = await one(journal, begin(held, T0 + 3))

    assert (started.task.id, started.released) == (high.id, low.id)
    assert (started.task.state, started.task.worker, started.task.attempt) == (
        _S.RUNNING, "n/w0", 1,
    )  # fmt: skip
    back = await journal.get(low.id)
    assert (back.state, back.attempt, back.run_at, back.worker) == (_S.QUEUED, 0, T0, None)
    assert [e.kind for e in await journal.history(low.id)] == [
        _K.SUBMITTED, _K.CLAIMED, _K.RELEASED,
    ]  # fmt: skip
    # FIFO within a priority: the given-back task still goes before the one submitted later.
    (held_again,) = await claim(journal, "n/w0", at=T0 + 4, start=False)
    assert held_again.id == low.id
    assert (await one(journal, begin(held_again, T0 + 5))).released is None


async def test_a_start_keeps_its_turn_against_equal_or_lower_or_unserved_work(
    journal: Journal,
) -> None:
    first = NewTask("job", priority=1)
    await submit(journal, first)
    (held,) = await claim(journal, "n/w0", at=T0 + 1, start=False, types=["job"])
    same, lower = NewTask("job", priority=1), NewTask("job", priority=0)
    unserved = NewTask("report", priority=9)
    await submit(journal, same, lower, unserved, at=T0 + 2)

    started = await one(journal, begin(held, T0 + 3, types=["job"]))

    assert (started.task.id, started.released) == (first.id, None)


async def test_a_start_of_a_task_no_longer_held_is_refused(journal: Journal) -> None:
    await submit(journal, NewTask("job"))
    (held,) = await claim(journal, "n/w0", at=T0, start=False)
    await one(journal, Append(event(_K.CANCELLED, held, T0 + 1)))
    with pytest.raises(InvalidTransition):
        await one(journal, begin(held, T0 + 2))
    (_again,) = await submit(journal, NewTask("job"))
    (held,) = await claim(journal, "n/w0", at=T0 + 3, start=False)
    await one(journal, ReapExpired(T0 + 3 + LEASE, NODE))
    await claim(journal, "n/w1", at=T0 + 40, start=False)  # reclaimed by another worker
    with pytest.raises(InvalidTransition):
        await one(journal, begin(held, T0 + 41))


async def test_several_starts_in_one_batch_each_take_the_best_work(journal: Journal) -> None:
    await submit(journal, *[NewTask("job", priority=0) for _ in range(3)])
    held = await claim(journal, "n/w0", "n/w1", "n/w2", at=T0 + 1, start=False)
    high = NewTask("job", priority=5)
    await submit(journal, high, at=T0 + 2)

    outcomes = await journal.run([begin(t, T0 + 3) for t in held])

    started = [o.unwrap() for o in outcomes]
    assert [s.task.id for s in started].count(high.id) == 1
    assert sum(s.released is not None for s in started) == 1
    running = [t async for t in journal.tasks() if t.state is _S.RUNNING]
    assert len(running) == 3


async def test_extend_leases_moves_the_leases_of_running_tasks_without_an_event(
    journal: Journal,
) -> None:
    await submit(journal, NewTask("job"), NewTask("job"))
    (running,) = await claim(journal, "w1")
    (waiting,) = [t async for t in journal.tasks() if t.state is _S.QUEUED]
    before = await journal.head()

    extended = await one(journal, ExtendLeases([running.id, waiting.id, "gone"], T0 + 300))

    assert extended == 1
    assert (await journal.get(running.id)).lease_expires_at == T0 + 300
    assert (await journal.get(waiting.id)).lease_expires_at is None
    assert await journal.head() == before
    assert await one(journal, ReapExpired(T0 + 299, NODE)) == []


async def test_running_on_lists_the_running_tasks_of_one_node(journal: Journal) -> None:
    await submit(journal, *[NewTask("job") for _ in range(4)])
    await claim(journal, "n_1/0", "n_1/1", "nx1/0", "n_10/0")

    mine = await journal.running_on("n_1")

    assert sorted(t.worker or "" for t in mine) == ["n_1/0", "n_1/1"]


# -- reads ----------------------------------------------------------------------------------


async def test_history_lists_a_tasks_events_in_order(journal: Journal) -> None:
    (task,) = await submit(journal, NewTask("job"))
    (running,) = await claim(journal, "w1", at=T0 + 1)
    policy = RetryPolicy(base=1.0, jitter=0.0)
    fail = lifecycle.decide_failure(
        running, error="boom", timed_out=False, at=T0 + 2, node=NODE, policy=policy,
        rng=random.Random(1),
    )  # fmt: skip
    await one(journal, Append(fail))
    await one(journal, PromoteDue(T0 + 3, NODE))
    (running,) = await claim(journal, "w2", at=T0 + 4)
    await succeed(journal, running, T0 + 5)

    history = await journal.history(task.id)

    assert [e.kind for e in history] == [
        _K.SUBMITTED, _K.CLAIMED, _K.STARTED, _K.FAILED, _K.ENQUEUED, _K.CLAIMED,
        _K.STARTED, _K.SUCCEEDED,
    ]  # fmt: skip
    assert [e.seq for e in history] == sorted(e.seq for e in history)
    assert history[3].data == {"error": "boom", "retry_at": T0 + 3}
    assert history[5].worker == "w2"
    with pytest.raises(TaskNotFound):
        await journal.history("no-such-task")
    with pytest.raises(TaskNotFound):
        await journal.get("no-such-task")


async def test_list_tasks_filters_and_pages_newest_first(journal: Journal) -> None:
    for n in range(7):
        queue, kind = ("mail" if n % 2 else "bulk"), ("send" if n < 4 else "sweep")
        await submit(journal, NewTask(kind, queue=queue), at=T0 + n)
    await claim(journal, "w", at=T0 + 10, queues=["mail"])  # the oldest mail task: n=1

    everything: list[Task] = []
    cursor = None
    while True:
        page = await journal.list_tasks(TaskFilter(), 3, cursor)
        everything += page.tasks
        cursor = page.next_cursor
        if cursor is None:
            break

    assert [t.created_at for t in everything] == [T0 + n for n in range(6, -1, -1)]
    mail = await journal.list_tasks(TaskFilter(queue="mail"), 10, None)
    assert [t.created_at for t in mail.tasks] == [T0 + 5, T0 + 3, T0 + 1]
    assert mail.next_cursor is None
    running = await journal.list_tasks(TaskFilter(state=_S.RUNNING), 10, None)
    assert [t.created_at for t in running.tasks] == [T0 + 1]
    sweeps = await journal.list_tasks(TaskFilter(queue="bulk", type="sweep"), 1, None)
    assert [t.created_at for t in sweeps.tasks] == [T0 + 6]
    rest = await journal.list_tasks(TaskFilter(queue="bulk", type="sweep"), 5, sweeps.next_cursor)
    assert [t.created_at for t in rest.tasks] == [T0 + 4]
    with pytest.raises(InvalidInput):
        await journal.list_tasks(TaskFilter(), 3, "not-a-cursor")


async def test_task_lists_go_newest_first_by_id_with_one_index_per_order(
    database_url: str,
) -> None:
    """Ids are UUIDv7, made from the clock: id order is creation order, so lists page by id
    through the primary key and tasks_state, and no index on created_at is kept."""
    async with opened(database_url) as journal:
        made = await submit(journal, *[NewTask("job") for _ in range(5)])
        await submit(journal, NewTask("job", run_at=T0 + 60))
        pages: list[list[str]] = []
        cursor = None
        while True:
            page = await journal.list_tasks(TaskFilter(state=_S.QUEUED), 2, cursor)
            pages.append([t.id for t in page.tasks])
            cursor = page.next_cursor
            if cursor is None:
                break
    assert pages == [[made[4].id, made[3].id], [made[2].id, made[1].id], [made[0].id]]
    assert sorted(t.id for t in made) == [t.id for t in made]
    if database_url.startswith("sqlite"):
        db = sqlite3.connect(path_from_url(database_url))
        try:
            rows = db.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'tasks'").fetchall()
        finally:
            db.close()
    else:
        conn = await raw_pg(database_url)
        try:
            rows = await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
                " AND tablename = 'tasks'"
            )
        finally:
            await conn.close()
    names = {r[0] for r in rows}
    assert "tasks_state" in names
    assert not names & {"tasks_created", "tasks_state_created"}


async def test_counts_group_tasks_by_queue_and_state(journal: Journal) -> None:
    await submit(journal, *[NewTask("job", queue="a") for _ in range(3)], NewTask("job", queue="b"))
    await submit(journal, NewTask("job", queue="b", run_at=T0 + 60))
    await claim(journal, "w1", queues=["a"])

    assert await journal.counts() == {
        ("a", _S.RUNNING): 1,
        ("a", _S.QUEUED): 2,
        ("b", _S.QUEUED): 1,
        ("b", _S.SCHEDULED): 1,
    }


async def test_head_is_the_last_event_and_the_projection_is_level_with_it(
    journal: Journal,
) -> None:
    assert (await journal.head()).journal_seq == 0
    await mixed_workload(journal)

    head = await journal.head()

    events = await all_events(journal)
    assert head.journal_seq == events[-1].seq
    assert head.projection_seq == head.journal_seq


# -- the journal as the truth ---------------------------------------------------------------


async def test_replay_of_the_journal_equals_the_live_projection(journal: Journal) -> None:
    await mixed_workload(journal)

    events = await all_events(journal)
    replayed = lifecycle.fold(events)

    assert [e.seq for e in events] == sorted({e.seq for e in events})
    assert {tid: t.audit_view() for tid, t in replayed.items()} == await projection(journal)
    assert {t.state for t in replayed.values()} >= {_S.SUCCEEDED, _S.CANCELLED, _S.QUEUED}


async def test_the_journal_refuses_updates_and_deletes(journal: Journal, database_url: str) -> None:
    await submit(journal, NewTask("job"))

    with pytest.raises((sqlite3.Error, asyncpg.PostgresError), match="append-only"):
        await raw_execute(database_url, "UPDATE journal SET node = 'forged'")
    with pytest.raises((sqlite3.Error, asyncpg.PostgresError), match="append-only"):
        await raw_execute(database_url, "DELETE FROM journal")

    assert [e.node for e in await all_events(journal)] == [NODE]


async def test_reopening_the_database_keeps_everything(database_url: str) -> None:
    async with opened(database_url) as journal:
        await mixed_workload(journal)
        tasks, events, head = (
            await projection(journal),
            await all_events(journal),
            await journal.head(),
        )

    async with opened(database_url) as journal:
        assert await projection(journal) == tasks
        assert await all_events(journal) == events
        assert await journal.head() == head
        await submit(journal, NewTask("job"), at=T0 + 2_000)
        assert (await journal.head()).journal_seq > head.journal_seq


async def test_open_brings_a_projection_left_behind_up_to_the_journal(database_url: str) -> None:
    async with opened(database_url) as journal:
        await mixed_workload(journal)
        tasks, head = await projection(journal), await journal.head()
        await journal.replace_projection([], 0)
        assert await journal.head() == type(head)(head.journal_seq, 0)

    async with opened(database_url) as journal:
        assert await projection(journal) == tasks
        assert await journal.head() == head


async def test_replace_projection_swaps_in_a_replayed_projection(journal: Journal) -> None:
    await mixed_workload(journal)
    live = await projection(journal)
    head = await journal.head()
    replayed = lifecycle.fold(await all_events(journal))

    await journal.replace_projection(list(replayed.values()), head.journal_seq)

    assert await projection(journal) == live
    assert await journal.head() == head


async def test_a_rebuild_that_fails_part_way_leaves_every_projection_as_it_was(
    journal: Journal, database_url: str
) -> None:
    """Tasks, queues and schedules are swapped in one transaction: the schedules' part is made
    to fail (a trigger refuses their rows), and the tasks and queues stay as they were."""
    await mixed_workload(journal)
    live, head = await projection(journal), await journal.head()
    replayed = lifecycle.fold(await all_events(journal))
    if database_url.startswith("sqlite"):
        refuse = ("CREATE TRIGGER refuse BEFORE INSERT ON schedules "
                  "BEGIN SELECT RAISE(ABORT, 'refused'); END")  # fmt: skip
    else:
        refuse = (
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused'; END $$; "
            "CREATE TRIGGER refuse BEFORE INSERT ON schedules "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    await raw_execute(database_url, refuse)
    schedule = Schedule("nightly", ScheduleTask("job"), every=60.0, next_run_at=T0)
    queue = QueueSettings("mail", concurrency=3)

    with pytest.raises(StorageError):
        await journal.replace_projection([], 0, [queue], [schedule])

    assert await projection(journal) == live
    assert await journal.head() == head
    assert await journal.queue_settings() == []
    await journal.replace_projection(list(replayed.values()), head.journal_seq, [queue], [])
    assert await projection(journal) == live
    assert [q.name for q in await journal.queue_settings()] == ["mail"]


# -- PostgreSQL: several nodes on one database ----------------------------------------------

postgres_only = pytest.mark.postgres


@asynccontextmanager
async def nodes(url: str, n: int) -> AsyncIterator[list[PostgresJournal]]:
    """``n`` journals on one database, each with a pool of its own: ``n`` nodes."""
    journals = [PostgresJournal(url, max_connections=2) for _ in range(n)]
    try:
        for journal in journals:
            await journal.open()
        yield journals
    finally:
        for journal in journals:
            await journal.close()


@postgres_only
async def test_nodes_starting_together_migrate_once(postgres_url: str) -> None:
    journals = [PostgresJournal(postgres_url, max_connections=1) for _ in range(4)]
    try:
        await asyncio.gather(*(j.open() for j in journals))
        conn = await raw_pg(postgres_url)
        try:
            versions = await conn.fetch("SELECT version FROM schema_version")
        finally:
            await conn.close()
        assert [v[0] for v in versions] == [n for n, _ in migrations("postgres")]
    finally:
        for journal in journals:
            await journal.close()


@postgres_only
async def test_nodes_claiming_together_never_claim_a_task_twice(postgres_url: str) -> None:
    async with nodes(postgres_url, 5) as journals:
        await submit(journals[0], *[NewTask("job") for _ in range(500)])

        async def claim_until_empty(journal: Journal, name: str) -> list[str]:
            mine: list[str] = []
            workers = [f"{name}/{n}" for n in range(10)]
            while claimed := await claim(journal, *workers, at=T0 + 1):
                mine += [t.id for t in claimed]
            return mine

        claimed = await asyncio.gather(
            *(claim_until_empty(j, f"node{n}") for n, j in enumerate(journals))
        )

        every = [tid for ids in claimed for tid in ids]
        assert len(every) == len(set(every)) == 500
        assert sum(1 for ids in claimed if ids) > 1  # they really did compete
        claims = [e for e in await all_events(journals[0]) if e.kind is _K.CLAIMED]
        assert len(claims) == 500
        assert await journals[0].counts() == {("default", _S.RUNNING): 500}


@postgres_only
async def test_reapers_racing_reap_each_expired_task_once(postgres_url: str) -> None:
    async with nodes(postgres_url, 4) as journals:
        await submit(journals[0], *[NewTask("job") for _ in range(200)])
        while await claim(journals[0], *[f"w{n}" for n in range(50)], at=T0):
            pass

        async def reap_until_empty(journal: Journal) -> list[str]:
            mine: list[str] = []
            while reaped := await one(journal, ReapExpired(T0 + LEASE + 1, NODE, limit=7)):
                mine += [t.id for t in reaped]
            return mine

        reaped = await asyncio.gather(*(reap_until_empty(j) for j in journals))

        every = [tid for ids in reaped for tid in ids]
        assert len(every) == len(set(every)) == 200
        expiries = [e for e in await all_events(journals[0]) if e.kind is _K.LEASE_EXPIRED]
        assert len(expiries) == 200
        assert await journals[0].counts() == {("default", _S.QUEUED): 200}


@postgres_only
async def test_nodes_racing_for_one_idempotency_key_create_one_task(postgres_url: str) -> None:
    async with nodes(postgres_url, 4) as journals:
        for round_ in range(5):
            key = f"key-{round_}"
            outcomes = await asyncio.gather(
                *(
                    j.run([Submit([NewTask("job", idempotency_key=key)], T0, NODE)])
                    for j in journals
                )
            )
            errors = [o.error for (o,) in outcomes]
            assert sum(e is None for e in errors) == 1
            assert all(isinstance(e, DuplicateTask) for e in errors if e is not None)
        assert await journals[0].counts() == {("default", _S.QUEUED): 5}


class Heard:
    """Notices a subscriber got, to await one by one."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Notice] = asyncio.Queue()

    def __call__(self, notice: Notice) -> None:
        self.queue.put_nowait(notice)

    async def next(self) -> Notice:
        return await asyncio.wait_for(self.queue.get(), 10.0)


@postgres_only
async def test_notify_tells_other_nodes_of_new_work_and_of_cancelled_running_tasks(
    postgres_url: str,
) -> None:
    async with nodes(postgres_url, 2) as (listener, other):
        heard = Heard()
        await listener.subscribe(heard)

        await submit(listener, NewTask("job", queue="own"))  # its own news: not told back
        await submit(other, NewTask("job", queue="later", run_at=T0 + 60))  # nothing ready
        await submit(other, NewTask("job", queue="q1"), NewTask("job", queue="q1"))
        assert await heard.next() == Notice("ready", queue="q1")

        (running,) = await claim(other, "w1", queues=["q1"])
        await one(other, Append(event(_K.CANCELLED, running, T0 + 1, reason="stop")))
        assert await heard.next() == Notice("cancel", task_id=running.id)

        (queued,) = await claim(other, "w2", queues=["own"])  # claims tell nobody
        await one(other, Append(event(_K.RELEASED, queued, T0 + 2)))
        assert await heard.next() == Notice("ready", queue="own")


@postgres_only
async def test_the_listener_comes_back_after_its_connection_is_killed(postgres_url: str) -> None:
    listener = PostgresJournal(postgres_url, reconnect_delay=(0.05, 0.2))
    async with nodes(postgres_url, 1) as (other,):
        await listener.open()
        try:
            heard = Heard()
            await listener.subscribe(heard)
            conn = await raw_pg(postgres_url)
            try:
                killed = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE query = $1",
                    f'LISTEN "{listener.channel}"',
                )
            finally:
                await conn.close()
            assert killed == 1

            assert await heard.next() == Notice("ready")  # "look again: you may have missed some"
            await submit(other, NewTask("job", queue="back"))
            assert await heard.next() == Notice("ready", queue="back")
        finally:
            await listener.close()


# -- PostgreSQL: tailing the journal while transactions commit out of order -----------------


async def tail_now(journal: PostgresJournal, position: int) -> tuple[list[int], int]:
    events, position = await journal.tail(position)
    return [e.seq for e in events], position


async def tail_until(
    journal: PostgresJournal, position: int, count: int
) -> tuple[list[Event], int]:
    """Follow the tail until ``count`` more events came.

    Any open transaction in the cluster holds the tail back (autovacuum's ANALYZE of a fresh
    table is one), so what is committed shows up soon, not at once: poll for it.
    """
    seen: list[Event] = []
    async with asyncio.timeout(10.0):
        while len(seen) < count:
            events, position = await journal.tail(position)
            seen += events
            if len(seen) < count:
                await asyncio.sleep(0.01)
    return seen, position


async def tail_seqs(journal: PostgresJournal, position: int, count: int) -> tuple[list[int], int]:
    events, position = await tail_until(journal, position, count)
    return [e.seq for e in events], position


async def begin_writer(url: str) -> asyncpg.Connection:
    """A bare connection in an open transaction that already has its transaction id."""
    conn = await raw_pg(url)
    await conn.execute("BEGIN")
    await conn.execute("SELECT pg_current_xact_id()")
    return conn


async def write_raw_event(conn: asyncpg.Connection, seq: int | None = None) -> int:
    written: int = await conn.fetchval(
        "INSERT INTO journal (seq, at, task_id, kind, node, data)"
        " VALUES (coalesce($1, nextval('journal_seq')), 0, 'raw', 'submitted', 'raw', '{}')"
        " RETURNING seq",
        seq,
    )
    return written


@postgres_only
async def test_tail_waits_for_a_lower_seq_that_commits_late(postgres_url: str) -> None:
    async with nodes(postgres_url, 1) as (journal,):
        await submit(journal, NewTask("job"))
        seen, position = await tail_seqs(journal, 0, 1)
        assert seen == [1]

        slow = await begin_writer(postgres_url)
        try:
            late = await write_raw_event(slow)  # seq 2, not committed yet
            (fast,) = await submit(journal, NewTask("job"))  # seq 3, committed
            assert late < fast.seq

            seen, position = await tail_now(journal, position)
            assert seen == []  # 3 must wait: 2 may still commit
            await slow.execute("COMMIT")
        finally:
            await slow.close()

        seen, position = await tail_seqs(journal, position, 2)
        assert seen == [late, fast.seq]
        again, later = await tail_now(journal, position)
        assert again == []
        assert later >= position


@postgres_only
async def test_tail_hands_out_a_late_low_seq_after_higher_ones_but_never_skips_it(
    postgres_url: str,
) -> None:
    async with nodes(postgres_url, 1) as (journal,):
        slow = await raw_pg(postgres_url)
        try:
            # The slow writer took its number before the fast one, but started its
            # transaction (got its xid) after the fast one's: xid order is not seq order.
            late: int = await slow.fetchval("SELECT nextval('journal_seq')")
            (fast,) = await submit(journal, NewTask("job"))
            await slow.execute("BEGIN")
            await write_raw_event(slow, late)
            seen, position = await tail_seqs(journal, 0, 1)
            assert seen == [fast.seq]
            await slow.execute("COMMIT")
        finally:
            await slow.close()

        seen, position = await tail_seqs(journal, position, 1)
        assert seen == [late]
        assert late < fast.seq


@postgres_only
async def test_tail_keeps_each_tasks_events_in_order_across_transactions(
    postgres_url: str,
) -> None:
    async with nodes(postgres_url, 1) as (journal,):
        # Transaction ids: older < blocker < newer. "newer" writes seq 1 and commits, then
        # "older" writes seq 2 and commits, while "blocker" is still open. Handing out
        # "older" alone (its xid is final) would put seq 2 before seq 1.
        older = await begin_writer(postgres_url)
        blocker = await begin_writer(postgres_url)
        newer = await begin_writer(postgres_url)
        try:
            first = await write_raw_event(newer)
            await newer.execute("COMMIT")
            second = await write_raw_event(older)
            await older.execute("COMMIT")
            assert first < second

            seen, position = await tail_now(journal, 0)
            assert seen == []
            await blocker.execute("COMMIT")
        finally:
            for conn in (older, blocker, newer):
                await conn.close()

        seen, position = await tail_seqs(journal, position, 2)
        assert seen == [first, second]


@postgres_only
async def test_tail_hands_out_every_event_once_while_nodes_write(postgres_url: str) -> None:
    async with nodes(postgres_url, 3) as journals:
        await submit(journals[0], *[NewTask("job") for _ in range(300)])
        done = asyncio.Event()

        async def work(journal: Journal, name: str) -> None:
            at = T0
            while claimed := await claim(journal, f"{name}/0", f"{name}/1", at=at):
                for task in claimed:
                    await succeed(journal, task, at)
                at += 1

        async def all_work() -> None:
            await asyncio.gather(work(journals[0], "a"), work(journals[1], "b"))
            done.set()

        async def follow() -> tuple[list[Event], int]:
            events: list[Event] = []
            position = 0
            while not done.is_set():
                batch, position = await journals[2].tail(position, limit=50)
                events += batch
                await asyncio.sleep(0)
            return events, position

        (followed, position), _ = await asyncio.gather(follow(), all_work())
        journal_events = await all_events(journals[0])
        rest, _ = await tail_until(journals[2], position, len(journal_events) - len(followed))
        followed += rest

        assert sorted(e.seq for e in followed) == [e.seq for e in journal_events]
        by_task: dict[str, list[int]] = {}
        for e in followed:
            by_task.setdefault(e.task_id, []).append(e.seq)
        assert all(seqs == sorted(seqs) for seqs in by_task.values())
        assert lifecycle.fold(followed) == lifecycle.fold(journal_events)


@postgres_only
async def test_a_claim_walks_the_ready_index_even_before_the_table_is_analyzed(
    postgres_url: str,
) -> None:
    """Right after a bulk load, stale statistics made the planner sort every queued task for
    each claim (a bitmap scan): the claim must walk tasks_ready in order and stop early."""
    async with opened(postgres_url) as journal:
        await submit(journal, *[NewTask("job") for _ in range(5000)])
    conn = await raw_pg(postgres_url)
    try:
        async with conn.transaction():
            await conn.execute(pg_module._NO_BITMAP)
            plan = "\n".join(
                r[0] for r in await conn.fetch("EXPLAIN " + pg_tx.Q["ready"], None, ["job"], 10)
            )
    finally:
        await conn.close()
    assert "Index Scan using tasks_ready" in plan, plan
    assert "Sort" not in plan, plan


async def test_a_journal_opens_while_another_process_holds_the_new_files_lock(
    tmp_path: Path,
) -> None:
    """Two processes starting together on one new file: while one holds its lock (here a
    write transaction of a bare connection, the file still in its first journal mode), the
    other's switch to WAL is refused at once by SQLite, busy timeout or not. The journal asks
    again until the lock is gone (it failed to open: "database is locked")."""
    path = tmp_path / "actorq.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("CREATE TABLE elsewhere (x)")
        release = threading.Timer(0.3, other.execute, ["COMMIT"])
        release.start()
        async with opened(f"sqlite:///{path}") as journal:
            (task,) = await submit(journal, NewTask("job"))
            assert (await journal.get(task.id)).state is _S.QUEUED
        release.join()
    finally:
        other.close()
    fresh = sqlite3.connect(path)
    try:
        assert fresh.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        fresh.close()
