"""Dead letters and retention in the journal: bulk retry and purge in bounded chunks, expiry
of finished tasks, and a replay that agrees with the live projection on both backends."""

from __future__ import annotations

import math
from typing import Any

import pytest

from actorq import audit
from actorq.dead_letters import selection_from_json, settle
from actorq.errors import InvalidInput, TaskExpired, TaskNotFound, TaskPurged
from actorq.journal.base import (
    Append,
    DeadAction,
    Expire,
    Journal,
    Op,
    Outcome,
    Selection,
    Submit,
)
from actorq.lifecycle import claimed_event
from actorq.model import Event, EventKind, NewTask, Task, TaskFilter, TaskState

NODE = "n1"


async def _one(journal: Journal, op: Op) -> Any:
    (outcome,) = await journal.run([op])
    return outcome.unwrap()


async def dead_tasks(
    journal: Journal, n: int, *, at: float = 1000.0, queue: str = "default", type_: str = "t",
    key: str | None = None,
) -> list[Task]:  # fmt: skip
    """``n`` tasks that ran once and were dead-lettered, each created a moment apart."""
    out = []
    for i in range(n):
        new = NewTask(type_, {"i": i}, queue=queue, max_attempts=1, idempotency_key=key)
        (task,) = await _one(journal, Submit([new], at + i * 0.001, NODE))
        worker = f"{NODE}/w0"
        claim = claimed_event(task.id, worker, at=at + 1, node=NODE, until=at + 60)
        await _one(journal, Append(claim))
        await _one(journal, Append(Event(EventKind.STARTED, task.id, at + 1, NODE, {}, worker)))
        data = {"error": f"boom {i}", "reason": "failed"}
        event = Event(EventKind.DEAD_LETTERED, task.id, at + 2, NODE, data, worker)
        out.append(await _one(journal, Append(event)))
    return out


async def succeeded(journal: Journal, *, at: float, queue: str = "default") -> Task:
    (task,) = await _one(journal, Submit([NewTask("t", queue=queue)], at, NODE))
    worker = f"{NODE}/w0"
    await _one(journal, Append(claimed_event(task.id, worker, at=at, node=NODE, until=at + 60)))
    await _one(journal, Append(Event(EventKind.STARTED, task.id, at, NODE, {}, worker)))
    done = Event(EventKind.SUCCEEDED, task.id, at, NODE, {"result": 1}, worker)
    result: Task = await _one(journal, Append(done))
    return result


def runner(journal: Journal, ops: list[Op]) -> Any:
    async def run(op: Op) -> Outcome:
        ops.append(op)
        (outcome,) = await journal.run([op])
        return outcome

    return run


async def test_bulk_retry_runs_in_chunks_and_gives_a_fresh_attempt_budget(
    journal: Journal,
) -> None:
    tasks = await dead_tasks(journal, 7)
    assert all(t.state is TaskState.DEAD and t.attempt == 1 for t in tasks)
    ops: list[Op] = []
    n = await settle(runner(journal, ops), DeadAction.RETRY, Selection(), clock=lambda: 2000.0,
                     node=NODE, by="cli:ops@host", chunk=3)  # fmt: skip
    assert n == 7
    assert len(ops) == 3  # 3 + 3 + 1: never one transaction for all of them
    for t in tasks:
        now = await journal.get(t.id)
        assert now.state is TaskState.QUEUED
        assert now.attempt == 0
        assert now.error is None
        last = (await journal.history(t.id))[-1]
        assert last.kind is EventKind.RETRIED
        assert last.data["by"] == "cli:ops@host"
        assert last.at == 2000.0
    assert (await audit.verify_projection(journal)).matches


async def test_bulk_actions_take_only_the_selection(journal: Journal) -> None:
    a = await dead_tasks(journal, 2, queue="a")
    b = await dead_tasks(journal, 2, queue="b", type_="u")
    ops: list[Op] = []
    run = runner(journal, ops)
    by = "api:127.0.0.1"
    assert await settle(run, DeadAction.PURGE, Selection(queue="a"), clock=lambda: 3000.0,
                        node=NODE, by=by) == 2  # fmt: skip
    ids = Selection(ids=[b[0].id, a[0].id, "no-such-task"])  # a[0] is gone already
    assert await settle(run, DeadAction.RETRY, ids, clock=lambda: 3001.0, node=NODE, by=by) == 1
    assert (await journal.get(b[0].id)).state is TaskState.QUEUED
    assert (await journal.get(b[1].id)).state is TaskState.DEAD
    wrong_type = Selection(ids=[b[1].id], type="t")
    assert await settle(run, DeadAction.RETRY, wrong_type, clock=lambda: 3002.0, node=NODE,
                        by=by) == 0  # fmt: skip


async def test_purged_tasks_leave_the_projection_and_keep_their_history(
    journal: Journal,
) -> None:
    tasks = await dead_tasks(journal, 3)
    ops: list[Op] = []
    n = await settle(runner(journal, ops), DeadAction.PURGE, Selection(), clock=lambda: 4000.0,
                     node=NODE, by="api:10.0.0.1", chunk=2)  # fmt: skip
    assert n == 3
    for t in tasks:
        with pytest.raises(TaskPurged) as caught:
            await journal.get(t.id)
        assert isinstance(caught.value, TaskNotFound)  # a 404 all the same
        kinds = [e.kind for e in await journal.history(t.id)]
        assert kinds[0] is EventKind.SUBMITTED
        assert kinds[-1] is EventKind.PURGED
    assert (await journal.counts()) == {}
    page = await journal.list_tasks(TaskFilter(), 10, None)
    assert page.tasks == []
    report = await audit.verify_projection(journal)
    assert report.matches, report
    replayed, _ = await audit.replay(journal)
    assert replayed == {}
    # A second purge finds nothing: each is purged once.
    assert await settle(runner(journal, []), DeadAction.PURGE, Selection(),
                        clock=lambda: 4001.0, node=NODE, by="x") == 0  # fmt: skip
    with pytest.raises(TaskNotFound) as unknown:
        await journal.get("never-was")
    assert type(unknown.value) is TaskNotFound


async def test_two_dead_letters_of_one_key_are_not_both_made_live(journal: Journal) -> None:
    first, second = await dead_tasks(journal, 2, key="same")  # dead tasks hold no key
    n = await settle(runner(journal, []), DeadAction.RETRY, Selection(), clock=lambda: 1600.0,
                     node=NODE, by="x")  # fmt: skip
    assert n == 1
    states = sorted([(await journal.get(t.id)).state for t in (first, second)])
    assert states == sorted([TaskState.QUEUED, TaskState.DEAD])


async def test_a_retry_whose_key_a_live_task_took_is_skipped(journal: Journal) -> None:
    (dead,) = await dead_tasks(journal, 1, key="k1")
    await _one(journal, Submit([NewTask("t", idempotency_key="k1")], 1500.0, NODE))
    n = await settle(runner(journal, []), DeadAction.RETRY, Selection(), clock=lambda: 1600.0,
                     node=NODE, by="x")  # fmt: skip
    assert n == 0
    assert (await journal.get(dead.id)).state is TaskState.DEAD


async def test_finished_tasks_expire_after_the_retention_oldest_first(journal: Journal) -> None:
    old = [await succeeded(journal, at=100.0 + i) for i in range(5)]
    (dead,) = await dead_tasks(journal, 1, at=100.0)
    young = await succeeded(journal, at=900.0)
    (live,) = await _one(journal, Submit([NewTask("t")], 50.0, NODE))  # queued: never expires
    expired = await _one(journal, Expire(1000.0, NODE, retention=500.0, limit=4))
    assert len(expired) == 4  # bounded
    expired += await _one(journal, Expire(1000.0, NODE, retention=500.0, limit=4))
    assert {t.id for t in expired} == {t.id for t in old} | {dead.id}
    assert await _one(journal, Expire(1000.0, NODE, retention=500.0)) == []
    for t in expired:
        with pytest.raises(TaskExpired):
            await journal.get(t.id)
        last = (await journal.history(t.id))[-1]
        assert last.kind is EventKind.EXPIRED
        assert last.data == {"state": t.state.value, "queue": "default", "retention": 500.0}
    assert (await journal.get(young.id)).state is TaskState.SUCCEEDED
    assert (await journal.get(live.id)).state is TaskState.QUEUED
    assert (await audit.verify_projection(journal)).matches
    # Rebuilt from the journal, the projection still lacks them.
    assert await audit.rebuild(journal) == 2
    assert (await audit.verify_projection(journal)).matches


async def test_a_queue_of_its_own_retention_overrides_the_default(journal: Journal) -> None:
    keep = await succeeded(journal, at=100.0, queue="audit")
    short = await succeeded(journal, at=950.0, queue="scratch")
    other = await succeeded(journal, at=100.0, queue="default")
    overrides = {"audit": 10_000.0, "scratch": 10.0}
    expired = await _one(journal, Expire(1000.0, NODE, 500.0, overrides))
    assert {t.id for t in expired} == {short.id, other.id}
    assert (await journal.get(keep.id)).state is TaskState.SUCCEEDED
    events = {t.id: (await journal.history(t.id))[-1] for t in expired}
    assert events[short.id].data["retention"] == 10.0
    assert events[other.id].data["retention"] == 500.0


async def test_a_journal_reopened_after_removals_is_current(database_url: str) -> None:
    from actorq.journal import journal_from_url

    journal = journal_from_url(database_url)
    await journal.open()
    try:
        await succeeded(journal, at=100.0)
        await dead_tasks(journal, 2, at=100.0)
        # The last events of the journal remove rows: the watermark must not fall with them.
        await _one(journal, Expire(1000.0, NODE, retention=1.0))
        head = await journal.head()
        assert head.projection_seq == head.journal_seq
    finally:
        await journal.close()
    journal = journal_from_url(database_url)
    await journal.open()  # would refold (and fail) on a watermark left behind
    try:
        assert (await journal.counts()) == {}
        assert (await audit.verify_projection(journal)).matches
    finally:
        await journal.close()


@pytest.mark.parametrize(
    ("body", "wanted"),
    [
        (None, Selection()),
        ({}, Selection()),
        ({"ids": ["a", "b", "a"]}, Selection(ids=["a", "b"])),
        ({"queue": "q", "type": "t"}, Selection(queue="q", type="t")),
    ],
)
def test_selection_from_json(body: Any, wanted: Selection) -> None:
    assert selection_from_json(body) == wanted


@pytest.mark.parametrize(
    "body",
    [[], {"ids": "a"}, {"ids": [1]}, {"ids": [""]}, {"queue": 3}, {"states": []},
     {"ids": ["x"] * 1001}, {"type": "a\x00"}],
)  # fmt: skip
def test_selection_refuses_what_it_cannot_mean(body: Any) -> None:
    with pytest.raises(InvalidInput):
        selection_from_json(body)


async def test_an_infinite_default_expires_only_the_queues_with_a_period(journal: Journal) -> None:
    kept = await succeeded(journal, at=100.0)
    short = await succeeded(journal, at=100.0, queue="scratch")
    expired = await _one(journal, Expire(1000.0, NODE, math.inf, {"scratch": 10.0}))
    assert [t.id for t in expired] == [short.id]
    assert (await journal.get(kept.id)).state is TaskState.SUCCEEDED
    assert await _one(journal, Expire(1000.0, NODE, math.inf)) == []
