"""Properties of the lifecycle fold under random sequences of operations on a few tasks.

Every operation offers one event to ``lifecycle.apply``: the events that fit the task's state
(by the table of DESIGN's states, written out here independently of ``lifecycle``) must be
applied, the others refused with InvalidTransition. After every step the projection must keep
the invariants a reader of the API relies on, and must equal a replay of the events from the
first one.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actorq import lifecycle
from actorq.errors import InvalidTransition
from actorq.model import FINISHED_STATES, LIVE_STATES, Event, EventKind, NewTask, Task, TaskState
from actorq.retry import RetryPolicy
from actorq.steering import permanent_event

K = EventKind
# The kinds of task events: control events (a queue's, a schedule's) have folds of their own.
TASK_KINDS = [k for k in EventKind if not k.value.startswith(("queue_", "schedule_"))]
S = TaskState
NODE = "n"
LEASE = 30.0
POLICY = RetryPolicy(base=1.0, cap=20.0)

# Which states each event may leave (issue 7's settled decisions, section 1 and 5).
FITS: dict[EventKind, frozenset[TaskState]] = {
    K.SUBMITTED: frozenset(),  # only a task that does not exist yet
    K.ENQUEUED: frozenset({S.SCHEDULED}),
    K.CLAIMED: frozenset({S.QUEUED}),
    K.STARTED: frozenset({S.CLAIMED}),
    K.SUCCEEDED: frozenset({S.RUNNING}),
    K.FAILED: frozenset({S.RUNNING}),
    K.TIMED_OUT: frozenset({S.RUNNING}),
    K.DEAD_LETTERED: frozenset({S.RUNNING}),
    K.LEASE_EXPIRED: frozenset({S.CLAIMED, S.RUNNING}),
    K.RELEASED: frozenset({S.CLAIMED, S.RUNNING}),
    K.CANCELLED: LIVE_STATES,
    K.RETRIED: frozenset({S.DEAD, S.CANCELLED}),
    # The task leaves the projection (its slot is free again): a purged dead letter, an
    # expired finished task.
    K.PURGED: frozenset({S.DEAD}),
    K.EXPIRED: FINISHED_STATES,
    K.SNOOZED: frozenset({S.RUNNING}),
    K.PROGRESS: frozenset({S.RUNNING}),
}
DEATHS = {"failed", "timed_out", "lease_expired"}
# A task's event kinds: queues' and schedules' (control events) have folds of their own.
TASK_KINDS = [
    k for k in K if k is not K.DEAD_LETTERED and not k.value.startswith(("queue_", "schedule_"))
]

SLOTS = [f"t{i}" for i in range(4)]
workers = st.sampled_from(["n/w0", "n/w1"])


def fits(task: Task | None, event: Event) -> bool:
    if task is None:
        return event.kind is K.SUBMITTED
    return task.state in FITS[event.kind]


def attempts_counted(life: list[tuple[Task | None, Event]]) -> int:
    """STARTED events since the last manual retry, less the running attempts given back."""
    n = 0
    for before, event in life:
        if event.kind is K.STARTED:
            n += 1
        elif event.kind is K.RETRIED:
            n = 0
        elif event.kind in (K.RELEASED, K.SNOOZED) and before is not None:
            n -= before.state is S.RUNNING  # a running attempt given back, or snoozed
    return n


def this_attempts_start(life: list[tuple[Task | None, Event]]) -> float | None:
    started = None
    for _, e in life:
        if e.kind is K.STARTED:
            started = e.at
        elif e.kind in (K.CLAIMED, K.RETRIED):
            started = None
    return started


def check_transition(before: Task, event: Event, after: Task) -> None:
    """What one applied event must have done to its task, beyond its state."""
    if event.kind in (K.PURGED, K.EXPIRED):
        assert after.state is before.state  # only checked: the projection drops the task
        return
    if after.state is S.DEAD:
        # Dead only when the last attempt, one whose handler ran, failed or was lost; or
        # when a handler said so (Permanent), whatever attempts it had left.
        assert before.state is S.RUNNING
        if event.data["reason"] != "permanent":
            assert before.attempt == before.max_attempts
            assert event.data["reason"] in DEATHS
    if event.kind is K.SNOOZED:
        # Due again later, the snoozed attempt given back.
        assert after.attempt == before.attempt - 1
        assert after.run_at == event.data["run_at"]
        assert after.state is (S.SCHEDULED if after.run_at > event.at else S.QUEUED)
    if event.kind in {K.LEASE_EXPIRED, K.RELEASED}:
        # A held task goes back to its place in the queue; a running one to the back.
        expected = before.run_at if before.state is S.CLAIMED else event.at
        assert (after.state, after.run_at, after.worker) == (S.QUEUED, expected, None)
    if event.kind is K.STARTED:
        # The worker that runs it, which may not be the one that claimed it.
        assert after.worker == (event.worker or before.worker)
        assert after.started_at == event.at
        assert after.progress is None  # a new attempt starts from nothing
    if event.kind is K.PROGRESS:
        # Only the progress moves; the rest of the task stays as it was.
        assert after.progress is not None
        assert (after.progress.fraction, after.progress.at) == (event.data["fraction"], event.at)
        assert attrs.evolve(after, progress=before.progress, seq=before.seq,
                            updated_at=before.updated_at) == before  # fmt: skip


def own_data(kind: EventKind, lease: dict[str, float], draw: st.DataObject) -> dict[str, Any]:
    """A worker's event's data: a start's lease, or a progress report."""
    if kind is K.STARTED:
        return lease
    return {"fraction": draw.draw(st.floats(0.0, 1.0), label="fraction"), "message": None}


def removal_or_plain(kind: EventKind, task: Task | None, slot: str, at: float) -> Event:
    """A purge or an expiry of ``task`` as the journal writes them; else an event of ``kind``
    with no data."""
    if task is not None and kind is K.PURGED:
        return lifecycle.purged_event(task, at=at, node=NODE, by="test")
    if task is not None and kind is K.EXPIRED:
        return lifecycle.expired_event(task, at=at, node=NODE, retention=60.0)
    return Event(kind, slot, at, NODE)


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000.0
        self.rng = random.Random(7)  # decide_failure's jitter, repeatable
        self.tasks: dict[str, Task] = {}
        self.events: list[Event] = []
        self.lives: dict[str, list[tuple[Task | None, Event]]] = defaultdict(list)

    def fitting(self, kind: EventKind) -> list[str]:
        """The tasks an event of ``kind`` fits now (for a submission: the free ids)."""
        if kind is K.SUBMITTED:
            return [s for s in SLOTS if s not in self.tasks]
        return [s for s in SLOTS if s in self.tasks and self.tasks[s].state in FITS[kind]]

    def offer(self, event: Event) -> None:
        """Apply ``event`` if it fits its task, else check the fold refuses it."""
        event = attrs.evolve(event, seq=len(self.events) + 1)
        before = self.tasks.get(event.task_id)
        if not fits(before, event):
            snapshot = dict(self.tasks)
            with pytest.raises(InvalidTransition):
                lifecycle.apply(before, event)
            assert self.tasks == snapshot
            return
        after = lifecycle.apply(before, event)
        assert lifecycle.state_after(event) is after.state
        known = lifecycle.known_transition(event)
        if known is not None:
            assert known == (None if before is None else before.state, after.state)
        if before is not None:
            check_transition(before, event, after)
        self.events.append(event)
        if event.kind in (K.PURGED, K.EXPIRED):
            del self.tasks[event.task_id]
            del self.lives[event.task_id]
            return
        self.tasks[event.task_id] = after
        self.lives[event.task_id].append((before, event))

    # -- operations -----------------------------------------------------------------------
    # Each operation has a rule that offers its event to a task it fits (enabled only when
    # there is one, so that long lives are reached), and ``misfit`` offers any event to any
    # task, which mostly tries refusals.

    def event(self, kind: EventKind, slot: str, draw: st.DataObject) -> Event:
        """The event an operation of ``kind`` would write for task ``slot`` now."""
        task, at = self.tasks.get(slot), self.now
        lease = {"lease_expires_at": at + LEASE}
        worker = draw.draw(workers, label="worker")
        match kind:
            case K.SUBMITTED:
                delay = draw.draw(st.sampled_from([None, -5.0, 0.0, 10.0, 100.0]), label="delay")
                run_at = None if delay is None else at + delay
                most = draw.draw(st.integers(1, 3), label="max_attempts")
                new = NewTask("job", id=slot, run_at=run_at, max_attempts=most)
                return lifecycle.submitted_event(new, at=at, node=NODE)
            case K.CLAIMED:
                return lifecycle.claimed_event(slot, worker, at=at, node=NODE, until=at + LEASE)
            case K.STARTED | K.PROGRESS:
                return Event(kind, slot, at, NODE, own_data(kind, lease, draw), worker)
            case K.FAILED | K.TIMED_OUT if task is not None:
                return lifecycle.decide_failure(
                    task, error="boom", timed_out=kind is K.TIMED_OUT, at=at, node=NODE,
                    policy=POLICY, rng=self.rng,
                )  # fmt: skip
            case K.FAILED | K.TIMED_OUT:
                return Event(kind, slot, at, NODE, {"error": "boom", "retry_at": at + 1})
            case K.LEASE_EXPIRED if task is not None:
                return lifecycle.decide_lease_expiry(task, at=at, node=NODE)
            case K.RETRIED if task is not None:
                return lifecycle.decide_retry(task, Event(kind, slot, at, NODE))
            case K.SUCCEEDED:
                return Event(kind, slot, at, NODE, {"result": slot})
            case K.CANCELLED:
                return Event(kind, slot, at, NODE, {"reason": "asked"})
            case K.SNOOZED:
                seconds = draw.draw(st.sampled_from([0.0, 2.0, 50.0]), label="seconds")
                return Event(kind, slot, at, NODE, {"run_at": at + seconds, "seconds": seconds})
            case K.DEAD_LETTERED if task is not None:
                return permanent_event(task, "no", at=at, node=NODE)
        return removal_or_plain(kind, task, slot, at)

    def offer_fitting(self, kind: EventKind, draw: st.DataObject) -> None:
        slot = draw.draw(st.sampled_from(self.fitting(kind)), label="task")
        self.offer(self.event(kind, slot, draw))

    @rule(dt=st.sampled_from([0.0, 0.5, 5.0, 31.0, 120.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: self.fitting(K.SUBMITTED))
    @rule(draw=st.data())
    def submit(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.SUBMITTED, draw)

    @precondition(lambda self: self.fitting(K.ENQUEUED))
    @rule(draw=st.data())
    def promote(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.ENQUEUED, draw)

    @precondition(lambda self: self.fitting(K.CLAIMED))
    @rule(draw=st.data())
    def claim(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.CLAIMED, draw)

    @precondition(lambda self: self.fitting(K.STARTED))
    @rule(draw=st.data())
    def start(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.STARTED, draw)

    @precondition(lambda self: self.fitting(K.SUCCEEDED))
    @rule(draw=st.data())
    def succeed(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.SUCCEEDED, draw)

    @precondition(lambda self: self.fitting(K.FAILED))
    @rule(draw=st.data(), timed_out=st.booleans())
    def fail(self, draw: st.DataObject, timed_out: bool) -> None:
        self.offer_fitting(K.TIMED_OUT if timed_out else K.FAILED, draw)

    @precondition(lambda self: self.fitting(K.LEASE_EXPIRED))
    @rule(draw=st.data())
    def expire_lease(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.LEASE_EXPIRED, draw)

    @precondition(lambda self: self.fitting(K.RELEASED))
    @rule(draw=st.data())
    def release(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.RELEASED, draw)

    @precondition(lambda self: self.fitting(K.CANCELLED))
    @rule(draw=st.data())
    def cancel(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.CANCELLED, draw)

    @precondition(lambda self: self.fitting(K.SNOOZED))
    @rule(draw=st.data())
    def snooze(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.SNOOZED, draw)

    @precondition(lambda self: self.fitting(K.DEAD_LETTERED))
    @rule(draw=st.data())
    def give_up(self, draw: st.DataObject) -> None:
        """Its handler raised Permanent."""
        self.offer_fitting(K.DEAD_LETTERED, draw)

    @precondition(lambda self: self.fitting(K.RETRIED))
    @rule(draw=st.data())
    def retry(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.RETRIED, draw)

    @precondition(lambda self: self.fitting(K.PURGED))
    @rule(draw=st.data())
    def purge(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.PURGED, draw)

    @precondition(lambda self: self.fitting(K.EXPIRED))
    @rule(draw=st.data())
    def expire(self, draw: st.DataObject) -> None:
        self.offer_fitting(K.EXPIRED, draw)

    @rule(kind=st.sampled_from([k for k in TASK_KINDS if k is not K.DEAD_LETTERED]),
          slot=st.sampled_from(SLOTS), draw=st.data())  # fmt: skip
    def misfit(self, kind: EventKind, slot: str, draw: st.DataObject) -> None:
        self.offer(self.event(kind, slot, draw))

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def attempts_are_handler_starts(self) -> None:
        for task in self.tasks.values():
            assert 0 <= task.attempt <= task.max_attempts
            if task.state in LIVE_STATES - {S.RUNNING}:
                assert task.attempt < task.max_attempts  # a live task has an attempt left
            assert task.attempt == attempts_counted(self.lives[task.id])

    @invariant()
    def held_tasks_have_a_worker_and_a_lease(self) -> None:
        for task in self.tasks.values():
            life = self.lives[task.id]
            assert (task.lease_expires_at is not None) == (task.state in {S.CLAIMED, S.RUNNING})
            # started_at is when this attempt's handler started: a claim or a manual retry
            # clears it, a start sets it.
            assert task.started_at == this_attempts_start(life)
            if task.state is S.CLAIMED:
                assert task.worker is not None
                assert task.started_at is None
            if task.state is S.RUNNING:
                assert task.worker is not None
                assert task.attempt >= 1

    @invariant()
    def finished_tasks_tell_the_truth(self) -> None:
        for task in self.tasks.values():
            assert (task.finished_at is not None) == task.state.finished
            if task.state is S.SUCCEEDED:
                assert task.error is None
            if task.state is S.DEAD:
                before, event = self.lives[task.id][-1]
                assert event.kind is K.DEAD_LETTERED
                assert before is not None
                if event.data["reason"] != "permanent":
                    assert before.attempt == before.max_attempts

    @invariant()
    def replay_equals_the_projection(self) -> None:
        assert lifecycle.fold(self.events) == self.tasks


LifecycleMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=50, deadline=None, derandomize=True, database=None
)
test_lifecycle_fold = LifecycleMachine.TestCase
