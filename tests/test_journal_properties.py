"""Properties of a real journal (SQLite and PostgreSQL) under random sequences of operations.

Each example opens a fresh database and drives it through the ``Journal`` protocol with a fake
clock: submissions (idempotency keys, delays), claims and starts (with queue and type filters),
outcomes appended by workers, promotions, lease reaping and heartbeats. Each operation's
result is checked against what the projection before it says it must do, and after every step
the live projection must equal the replay of the journal, counts must add up, no idempotency
key may be held twice, and the journal must only ever grow. A hypothesis state machine is
sync: it drives the async journal on an event loop of its own.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Coroutine, Sequence, Set
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import actorq.lifecycle as lifecycle
from actorq.audit import verify_projection
from actorq.errors import ActorqError, DuplicateTask
from actorq.journal import backend_of, journal_from_url
from actorq.journal.base import (
    Append,
    Claim,
    DeadAction,
    Expire,
    ExtendLeases,
    Op,
    Outcome,
    PromoteDue,
    ReapExpired,
    Selection,
    Settled,
    SettleDead,
    Start,
    Started,
    Submit,
)
from actorq.journal.postgres import split_url
from actorq.journal.sqlite import path_from_url
from actorq.model import FINISHED_STATES, LIVE_STATES, Event, EventKind, NewTask, Task, TaskState
from actorq.retry import RetryPolicy

T = TypeVar("T")
K = EventKind
S = TaskState
NODE = "n"
LEASE = 30.0
POLICY = RetryPolicy(base=1.0, cap=20.0)
HELD = {S.CLAIMED, S.RUNNING}
QUEUES = ["default", "q2"]
TYPES = ["a", "b"]
WORKERS = ["n/w0", "n/w1", "n/w2"]

filters = st.sampled_from([None, ["default"], ["q2"], QUEUES])
type_filters = st.sampled_from([None, ["a"], ["b"], TYPES])


def ready_order(task: Task) -> tuple[int, float, int]:
    """The order claims take ready tasks in: priority, then FIFO, then journal order."""
    return (-task.priority, task.run_at, task.seq)


def ready(
    tasks: dict[str, Task], queues: Sequence[str] | None, types: Sequence[str] | None
) -> list[Task]:
    found = [
        t
        for t in tasks.values()
        if t.state is S.QUEUED
        and (queues is None or t.queue in queues)
        and (types is None or t.type in types)
    ]
    return sorted(found, key=ready_order)


def audit(tasks: dict[str, Task]) -> dict[str, Task]:
    return {tid: t.audit_view() for tid, t in tasks.items()}


class JournalMachine(RuleBasedStateMachine):
    """One example: one fresh database at ``url``, one event loop."""

    url: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.run(self.fresh_database())
        self.journal = journal_from_url(self.url)
        self.run(self.journal.open())
        self.now = 1_000.0
        self.rng = random.Random(11)
        self.made = 0
        self.tasks: dict[str, Task] = {}
        self.events: list[Event] = []

    def teardown(self) -> None:
        try:
            self.run(self.journal.close())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def fresh_database(self) -> None:
        if backend_of(self.url) == "sqlite":
            path = Path(path_from_url(self.url))
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
            return
        dsn, schema = split_url(self.url)
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.execute(
                f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"'
            )
        finally:
            await conn.close()

    async def read(self) -> tuple[dict[str, Task], list[Event]]:
        tasks = {t.id: t async for t in self.journal.tasks()}
        return tasks, [e async for e in self.journal.events()]

    def step(self, op: Op) -> Outcome:
        """Run ``op`` in a batch of its own; a refused op must leave everything as it was."""
        before_tasks, before_events = self.tasks, self.events
        (outcome,) = self.run(self.journal.run([op]))
        self.tasks, self.events = self.run(self.read())
        assert self.events[: len(before_events)] == before_events  # append-only
        if outcome.error is not None:
            assert isinstance(outcome.error, ActorqError), outcome.error
            assert self.events == before_events
            assert self.tasks == before_tasks
        return outcome

    def expect(self, outcome: Outcome, ok: bool) -> None:
        assert (outcome.error is None) == ok, (ok, outcome.error)

    def pick(self, draw: st.DataObject, states: set[TaskState]) -> str:
        """A task id, mostly of one in ``states``; sometimes any, or one that does not exist."""
        fitting = sorted(t.id for t in self.tasks.values() if t.state in states)
        choice = draw.draw(st.integers(0, 7), label="which")
        if fitting and choice < 6:
            return draw.draw(st.sampled_from(fitting), label="task")
        if self.tasks and choice < 7:
            return draw.draw(st.sampled_from(sorted(self.tasks)), label="task")
        return "no-such-task"

    def some(self, states: Set[TaskState]) -> bool:
        """Whether a task is in one of ``states``: rules that need one wait for it, so that
        examples spend their steps on lives that go somewhere."""
        return any(t.state in states for t in self.tasks.values())

    def key_owner(self, key: str | None) -> str | None:
        live = [t.id for t in self.tasks.values() if t.state in LIVE_STATES]
        owners = [tid for tid in live if key is not None and self.tasks[tid].idempotency_key == key]
        return owners[0] if owners else None

    # -- operations -----------------------------------------------------------------------

    @rule(dt=st.sampled_from([0.0, 1.0, 10.0, 31.0, 100.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule(
        news=st.lists(
            st.tuples(
                st.sampled_from(TYPES),
                st.sampled_from(QUEUES),
                st.sampled_from([0, 5, 9]),
                st.sampled_from([None, None, "k1", "k2"]),
                st.sampled_from([None, -5.0, 10.0, 100.0]),
                st.integers(1, 3),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def submit(self, news: list[tuple[str, str, int, str | None, float | None, int]]) -> None:
        tasks = []
        for type_, queue, priority, key, delay, most in news:
            self.made += 1
            run_at = None if delay is None else self.now + delay
            tasks.append(NewTask(type_, None, queue, priority, most, None, run_at,
                                 idempotency_key=key, id=f"task-{self.made:03d}"))  # fmt: skip
        keys = [n.idempotency_key for n in tasks if n.idempotency_key is not None]
        clash = len(set(keys)) < len(keys) or any(self.key_owner(k) for k in keys)
        outcome = self.step(Submit(tasks, self.now, NODE))
        self.expect(outcome, not clash)
        if clash:
            assert isinstance(outcome.error, DuplicateTask)
            return
        for new, task in zip(tasks, outcome.value, strict=True):
            due = new.run_at is None or new.run_at <= self.now
            assert (task.id, task.state) == (new.id, S.QUEUED if due else S.SCHEDULED)

    @precondition(lambda self: self.some({S.QUEUED}))
    @rule(
        workers=st.lists(st.sampled_from(WORKERS), min_size=1, max_size=2, unique=True),
        queues=filters,
        types=type_filters,
    )
    def claim(self, workers: list[str], queues: list[str] | None, types: list[str] | None) -> None:
        expected = ready(self.tasks, queues, types)[: len(workers)]
        outcome = self.step(Claim(workers, self.now, NODE, LEASE, queues, types))
        claimed: list[Task] = outcome.unwrap()
        assert [t.id for t in claimed] == [t.id for t in expected]
        for task, was, worker in zip(claimed, expected, workers, strict=False):
            # Held ahead of time: no attempt is counted until its handler starts.
            assert (task.state, task.worker, task.attempt) == (S.CLAIMED, worker, was.attempt)
            assert task.lease_expires_at == self.now + LEASE

    @precondition(lambda self: self.some({S.CLAIMED}))
    @rule(draw=st.data(), worker=st.sampled_from(WORKERS), queues=filters, types=type_filters)
    def start(
        self,
        draw: st.DataObject,
        worker: str,
        queues: list[str] | None,
        types: list[str] | None,
    ) -> None:
        task_id = self.pick(draw, {S.CLAIMED})
        held = self.tasks.get(task_id)
        claimer = held.worker if held is not None and held.worker else "n/w9"
        best = next(iter(ready(self.tasks, queues, types)), None)
        op = Start(task_id, claimer, worker, self.now, NODE, LEASE, queues, types)
        outcome = self.step(op)
        self.expect(outcome, held is not None and held.state is S.CLAIMED)
        if held is None or outcome.error is not None:
            return
        started: Started = outcome.value
        if best is not None and lifecycle.ranks_before(best, held):
            # A better ready task runs instead; the held one goes back to its place.
            assert (started.task.id, started.released) == (best.id, held.id)
            back = self.tasks[held.id]
            assert (back.state, back.run_at, back.attempt) == (S.QUEUED, held.run_at, held.attempt)
        else:
            assert (started.task.id, started.released) == (held.id, None)
        assert started.task.state is S.RUNNING
        assert started.task.worker == worker
        assert started.task.started_at == self.now

    def report(self, draw: st.DataObject, kind: EventKind, fits: Set[TaskState]) -> None:
        """A worker's word on a task it holds, fenced by worker and attempt (now and then
        from a worker that no longer holds it)."""
        task = self.tasks.get(self.pick(draw, fits))
        if task is None:
            return
        stale = draw.draw(st.integers(0, 5), label="stale") == 5
        worker = "n/w9" if stale else task.worker
        if kind in {K.FAILED, K.TIMED_OUT}:
            event = lifecycle.decide_failure(
                task, error="boom", timed_out=kind is K.TIMED_OUT, at=self.now, node=NODE,
                policy=POLICY, rng=self.rng,
            )  # fmt: skip
        else:
            data = {"lease_expires_at": self.now + LEASE} if kind is K.STARTED else {}
            event = Event(kind, task.id, self.now, NODE, data, worker)
        outcome = self.step(Append(event, worker=worker, attempt=task.attempt))
        self.expect(outcome, task.state in fits and task.worker == worker)

    @precondition(lambda self: self.some({S.RUNNING}))
    @rule(draw=st.data(), kind=st.sampled_from([K.SUCCEEDED, K.FAILED, K.TIMED_OUT]))
    def finish(self, draw: st.DataObject, kind: EventKind) -> None:
        self.report(draw, kind, {S.RUNNING})

    @precondition(lambda self: self.some(HELD))
    @rule(draw=st.data())
    def release(self, draw: st.DataObject) -> None:
        self.report(draw, K.RELEASED, HELD)

    @precondition(lambda self: self.some({S.CLAIMED}))
    @rule(draw=st.data())
    def start_beside(self, draw: st.DataObject) -> None:
        """A worker starts a held task with an Append(STARTED) when nothing better may wait."""
        self.report(draw, K.STARTED, {S.CLAIMED})

    @precondition(lambda self: self.some(LIVE_STATES))
    @rule(draw=st.data())
    def cancel(self, draw: st.DataObject) -> None:
        task_id = self.pick(draw, set(LIVE_STATES))
        task = self.tasks.get(task_id)
        outcome = self.step(Append(Event(K.CANCELLED, task_id, self.now, NODE)))
        self.expect(outcome, task is not None and task.state in LIVE_STATES)

    @precondition(lambda self: self.some({S.DEAD, S.CANCELLED}))
    @rule(draw=st.data())
    def retry(self, draw: st.DataObject) -> None:
        task_id = self.pick(draw, {S.DEAD, S.CANCELLED})
        task = self.tasks.get(task_id)
        outcome = self.step(Append(Event(K.RETRIED, task_id, self.now, NODE)))
        if task is None:
            self.expect(outcome, False)
            return
        holder = self.key_owner(task.idempotency_key)
        self.expect(outcome, task.state in {S.DEAD, S.CANCELLED} and holder in {None, task.id})
        if outcome.error is None:
            after = self.tasks[task_id]
            assert after.run_at == max(task.run_at, self.now)
            assert after.state is (S.SCHEDULED if task.run_at > self.now else S.QUEUED)

    @precondition(lambda self: self.some({S.SCHEDULED}))
    @rule()
    def promote_due(self) -> None:
        due = {t.id for t in self.tasks.values() if t.state is S.SCHEDULED and t.run_at <= self.now}
        promoted: list[Task] = self.step(PromoteDue(self.now, NODE)).unwrap()
        assert {t.id for t in promoted} == due
        assert all(t.state is S.QUEUED for t in promoted)

    @precondition(lambda self: self.some(HELD))
    @rule()
    def reap_expired(self) -> None:
        expired = {
            t.id: t
            for t in self.tasks.values()
            if t.lease_expires_at is not None and t.lease_expires_at <= self.now
        }
        reaped: list[Task] = self.step(ReapExpired(self.now, NODE)).unwrap()
        assert {t.id for t in reaped} == set(expired)
        for task in reaped:
            was = expired[task.id]
            last = was.state is S.RUNNING and was.attempt >= was.max_attempts
            assert task.state is (S.DEAD if last else S.QUEUED)

    @precondition(lambda self: self.tasks)
    @rule(draw=st.data(), ahead=st.sampled_from([1.0, 60.0]))
    def extend_leases(self, draw: st.DataObject, ahead: float) -> None:
        ids = draw.draw(st.lists(st.sampled_from(sorted(self.tasks)), max_size=3, unique=True))
        held = {tid for tid in ids if self.tasks[tid].state in HELD}
        extended = self.step(ExtendLeases(ids, self.now + ahead)).unwrap()
        assert extended == len(held)
        for tid in held:
            assert self.tasks[tid].lease_expires_at == self.now + ahead

    @precondition(lambda self: self.some({S.DEAD}))
    @rule(
        action=st.sampled_from(list(DeadAction)),
        queue=st.sampled_from([None, *QUEUES]),
        chunk=st.sampled_from([1, 2, 500]),
    )
    def settle_dead(self, action: DeadAction, queue: str | None, chunk: int) -> None:
        """A bulk retry or purge, chunk by chunk as ``dead_letters.settle`` runs it."""
        dead = {t.id: t for t in self.tasks.values()
                if t.state is S.DEAD and queue in (None, t.queue)}  # fmt: skip
        done: list[Task] = []
        after = None
        while True:
            op = SettleDead(action, Selection(queue=queue), self.now, NODE, "p", after, chunk)
            settled: Settled = self.step(op).unwrap()
            done += settled.tasks
            if settled.scanned < chunk:
                break
            after = settled.last
        ids = {t.id for t in done}
        assert ids <= set(dead)
        if action is DeadAction.PURGE:
            assert ids == set(dead)
            assert not ids & set(self.tasks)  # gone from the projection, history kept
            return
        for tid in set(dead) - ids:  # skipped only for a key another live task holds
            assert self.key_owner(dead[tid].idempotency_key) not in (None, tid)
        for tid in ids:
            assert self.tasks[tid].state in (S.QUEUED, S.SCHEDULED)
            assert self.tasks[tid].attempt == 0

    @precondition(lambda self: self.some(FINISHED_STATES))
    @rule(retention=st.sampled_from([0.0, 10.0, 100.0]), limit=st.sampled_from([1, 500]))
    def expire(self, retention: float, limit: int) -> None:
        cutoff = self.now - retention
        done = [t for t in self.tasks.values() if t.state in FINISHED_STATES]
        due = {t.id for t in done if t.finished_at is not None and t.finished_at <= cutoff}
        expired: list[Task] = self.step(Expire(self.now, NODE, retention, limit=limit)).unwrap()
        ids = {t.id for t in expired}
        assert ids <= due
        assert len(ids) == min(limit, len(due))
        assert not ids & set(self.tasks)

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def projection_is_the_replay(self) -> None:
        assert audit(self.tasks) == audit(lifecycle.fold(self.events))
        report = self.run(verify_projection(self.journal))
        assert report.matches, report
        assert report.events == len(self.events)

    @invariant()
    def seqs_increase(self) -> None:
        seqs = [e.seq for e in self.events]
        assert seqs == sorted(set(seqs))
        head = self.run(self.journal.head())
        assert head.journal_seq == (seqs[-1] if seqs else 0)

    @invariant()
    def keys_are_held_once(self) -> None:
        keys = [
            t.idempotency_key
            for t in self.tasks.values()
            if t.state in LIVE_STATES and t.idempotency_key is not None
        ]
        assert len(keys) == len(set(keys))

    @invariant()
    def counts_add_up(self) -> None:
        counts = self.run(self.journal.counts())
        expected = collections.Counter((t.queue, t.state) for t in self.tasks.values())
        assert counts == dict(expected)
        assert sum(counts.values()) == len(self.tasks)

    @invariant()
    def held_tasks_have_a_lease(self) -> None:
        for task in self.tasks.values():
            assert (task.lease_expires_at is not None) == (task.state in HELD)
            assert 0 <= task.attempt <= task.max_attempts
            if task.state in HELD:
                assert task.worker is not None


def run_machine(url: str, examples: int) -> None:
    machine = type("Machine", (JournalMachine,), {"url": url})
    bounded = settings(
        max_examples=examples,
        stateful_step_count=40,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI is repeatable
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run_state_machine_as_test(machine, settings=bounded)


def test_journal_properties_on_sqlite(tmp_path: Path) -> None:
    run_machine(f"sqlite:///{tmp_path}/actorq.db", examples=40)


@pytest.mark.postgres
def test_journal_properties_on_postgres(postgres_url: str) -> None:
    # ``postgres_url`` makes a schema (or skips, or fails under ACTORQ_REQUIRE_PG=1); each
    # example drops and makes it again.
    run_machine(postgres_url, examples=20)
