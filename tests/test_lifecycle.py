"""The lifecycle fold on its own: transitions, refusals, retry policy, and what a follower of
the journal can tell from an event without its task."""

from __future__ import annotations

import random

import attrs
import pytest

from actorq import lifecycle
from actorq.errors import InvalidTransition
from actorq.model import Event, EventKind, NewTask, Task, TaskState, is_control
from actorq.retry import Backoff, RetryPolicy
from actorq.steering import cancelled_event, snoozed_event

K = EventKind


def submitted(at: float = 100.0, run_at: float | None = None) -> Event:
    return lifecycle.submitted_event(NewTask("job", max_attempts=2, run_at=run_at), at=at, node="n")


def claimed(task: Task, at: float) -> Event:
    return lifecycle.claimed_event(task.id, "n/w0", at=at, node="n", until=at + 30)


def started(task: Task, at: float, worker: str = "n/w0") -> Event:
    return Event(K.STARTED, task.id, at, "n", {"lease_expires_at": at + 30}, worker=worker)


def run(task: Task, at: float) -> Task:
    """Claimed by a worker, then its handler starts."""
    return lifecycle.apply(lifecycle.apply(task, claimed(task, at)), started(task, at + 0.5))


def retried(task: Task, at: float) -> Event:
    return lifecycle.decide_retry(task, Event(K.RETRIED, task.id, at, "n"))


def every_kind_in_a_life() -> list[tuple[Task | None, Event]]:
    """(task before, event) for at least one event of every kind, each fitting its task."""
    rng = random.Random(7)
    policy = RetryPolicy(base=1, jitter=0)
    steps: list[tuple[Task | None, Event]] = []

    def step(task: Task | None, event: Event) -> Task:
        steps.append((task, event))
        return lifecycle.apply(task, event)

    # scheduled -> queued -> claimed -> running -> timed out (retry) -> ... -> dead
    t = step(None, submitted(run_at=150.0))
    t = step(t, Event(K.ENQUEUED, t.id, 150.0, "n"))
    t = step(t, claimed(t, 151.0))
    t = step(t, started(t, 151.5))
    t = step(t, lifecycle.decide_failure(t, error="slow", timed_out=True, at=152.0, node="n",
                                         policy=policy, rng=rng))  # fmt: skip
    t = step(t, Event(K.ENQUEUED, t.id, 153.0, "n"))
    t = step(t, claimed(t, 154.0))
    t = step(t, started(t, 154.5))
    t = step(t, lifecycle.decide_failure(t, error="boom", timed_out=False, at=155.0, node="n",
                                         policy=policy, rng=rng))  # fmt: skip
    # retried by hand; a held task given back, a running one given back, a held one whose
    # lease expired, a running one whose lease expired, then success
    t = step(t, retried(t, 156.0))
    t = step(t, claimed(t, 157.0))
    t = step(t, Event(K.RELEASED, t.id, 158.0, "n"))
    t = step(t, claimed(t, 158.5))
    t = step(t, started(t, 158.6))
    t = step(t, Event(K.RELEASED, t.id, 158.7, "n"))
    t = step(t, claimed(t, 159.0))
    t = step(t, lifecycle.decide_lease_expiry(t, at=159.5, node="n"))
    t = step(t, claimed(t, 159.6))
    t = step(t, started(t, 159.7))
    t = step(t, lifecycle.decide_lease_expiry(t, at=160.0, node="n"))
    t = step(t, claimed(t, 161.0))
    t = step(t, started(t, 161.5))
    t = step(t, Event(K.PROGRESS, t.id, 161.7, "n", {"fraction": 0.5, "message": "half"}))
    step(t, Event(K.SUCCEEDED, t.id, 162.0, "n", {"result": 1}))
    # failed with a retry to come, cancelled while scheduled, then retried by hand
    q = step(None, submitted())
    q = step(q, claimed(q, 101.0))
    q = step(q, started(q, 101.5))
    q = step(q, lifecycle.decide_failure(q, error="boom", timed_out=False, at=102.0, node="n",
                                         policy=policy, rng=rng))  # fmt: skip
    q = step(q, Event(K.CANCELLED, q.id, 102.5, "n", {"reason": "no"}))
    step(q, retried(q, 103.0))
    # a dead letter purged and a finished task expired: both leave the projection
    d = step(None, submitted())
    d = step(d, claimed(d, 101.0))
    d = step(d, started(d, 101.5))
    d = step(d, Event(K.DEAD_LETTERED, d.id, 102.0, "n", {"error": "x", "reason": "failed"}))
    step(d, lifecycle.purged_event(d, at=103.0, node="n", by="cli:ops@host"))
    x = step(None, submitted())
    x = step(x, claimed(x, 101.0))
    x = step(x, started(x, 101.5))
    x = step(x, Event(K.SUCCEEDED, x.id, 102.0, "n", {"result": None}))
    step(x, lifecycle.expired_event(x, at=900.0, node="n", retention=60.0))
    # its handler snoozes it twice (once while running, once in its first moments, the
    # start carried by the snooze), then cancels it in its first moments
    z = step(None, submitted())
    z = step(z, claimed(z, 101.0))
    z = step(z, started(z, 101.5))
    z = step(z, snoozed_event(z, 5.0, at=102.0, node="n"))
    z = step(z, Event(K.ENQUEUED, z.id, 107.0, "n"))
    z = step(z, claimed(z, 107.5))
    z = step(z, carrying_start(snoozed_event(z, 0.0, at=108.0, node="n")))
    z = step(z, claimed(z, 108.5))
    step(z, carrying_start(cancelled_event(z, "unwanted", at=109.0, node="n")))
    return steps


def carrying_start(event: Event) -> Event:
    """An outcome of a run shorter than the start window: its start rides along."""
    return attrs.evolve(event, data={**event.data, "started_at": event.at - 0.1})


def test_a_task_lives_through_every_kind_of_event() -> None:
    steps = every_kind_in_a_life()
    task_kinds = {k for k in EventKind if not k.value.startswith(("queue_", "schedule_"))}
    assert {e.kind for _, e in steps} == task_kinds
    final = lifecycle.fold([e for _, e in steps])
    assert len(final) == 3
    states = sorted(t.state for t in final.values())
    assert states == sorted([TaskState.SUCCEEDED, TaskState.QUEUED, TaskState.CANCELLED])


def test_the_state_after_an_event_is_known_from_the_event_alone() -> None:
    for before, event in every_kind_in_a_life():
        after = lifecycle.apply(before, event)
        assert lifecycle.state_after(event) is after.state, event.kind
        transition = lifecycle.known_transition(event)
        if transition is not None:
            assert transition == (None if before is None else before.state, after.state)
        else:
            assert event.kind in (K.CANCELLED, K.RETRIED, K.LEASE_EXPIRED, K.RELEASED, K.PURGED,
                                  K.EXPIRED)  # fmt: skip


def test_purge_takes_only_dead_letters_and_expiry_only_finished_tasks() -> None:
    first = submitted()
    task = lifecycle.apply(None, first)
    with pytest.raises(InvalidTransition):
        lifecycle.apply(task, lifecycle.purged_event(task, at=101.0, node="n", by="x"))
    with pytest.raises(InvalidTransition):
        lifecycle.apply(task, lifecycle.expired_event(task, at=101.0, node="n", retention=1.0))
    events = [first, claimed(task, 101.0), started(task, 101.5),
              Event(K.SUCCEEDED, task.id, 102.0, "n", {})]  # fmt: skip
    done = lifecycle.fold(events)[task.id]
    with pytest.raises(InvalidTransition):
        lifecycle.apply(done, lifecycle.purged_event(done, at=103.0, node="n", by="x"))
    gone = lifecycle.expired_event(done, at=103.0, node="n", retention=1.0)
    assert lifecycle.fold([*events, gone]) == {}  # replay drops it as the projection does


def test_an_attempt_counts_when_its_handler_starts_not_when_it_is_claimed() -> None:
    task = lifecycle.apply(None, submitted())
    held = lifecycle.apply(task, claimed(task, 101.0))
    assert (held.state, held.attempt, held.started_at) == (TaskState.CLAIMED, 0, None)
    assert held.worker == "n/w0"
    running = lifecycle.apply(held, started(held, 103.0, worker="n/w1"))
    assert (running.state, running.attempt, running.started_at) == (TaskState.RUNNING, 1, 103.0)
    assert running.worker == "n/w1"  # handed over inside the node before it started


def test_a_held_task_whose_lease_expires_goes_back_to_its_place_with_attempts_intact() -> None:
    task = lifecycle.apply(None, submitted())  # max_attempts 2
    for at in (101.0, 201.0, 301.0):  # more expiries than attempts: none of them counts
        held = lifecycle.apply(task, claimed(task, at))
        expiry = lifecycle.decide_lease_expiry(held, at=at + 31, node="n")
        assert expiry.kind is K.LEASE_EXPIRED
        task = lifecycle.apply(held, expiry)
        assert (task.state, task.attempt, task.run_at) == (TaskState.QUEUED, 0, 100.0)


def test_a_running_task_whose_lease_expires_spent_its_attempt() -> None:
    task = run(lifecycle.apply(None, submitted()), 101.0)
    task = lifecycle.apply(task, lifecycle.decide_lease_expiry(task, at=140.0, node="n"))
    assert (task.state, task.attempt) == (TaskState.QUEUED, 1)
    task = run(task, 141.0)
    last = lifecycle.decide_lease_expiry(task, at=180.0, node="n")
    assert last.kind is K.DEAD_LETTERED
    assert lifecycle.apply(task, last).state is TaskState.DEAD


def test_success_after_failures_leaves_no_error_and_a_cancel_writes_none() -> None:
    policy = RetryPolicy(base=1, jitter=0)
    task = run(lifecycle.apply(None, submitted()), 101.0)
    failure = lifecycle.decide_failure(task, error="boom", timed_out=False, at=102.0, node="n",
                                       policy=policy, rng=random.Random(1))  # fmt: skip
    task = lifecycle.apply(task, failure)
    assert task.error == "boom"  # the last error, while a retry is to come
    task = lifecycle.apply(task, Event(K.ENQUEUED, task.id, 103.0, "n"))
    task = run(task, 104.0)
    done = lifecycle.apply(task, Event(K.SUCCEEDED, task.id, 105.0, "n", {"result": 2}))
    assert (done.state, done.error, done.result) == (TaskState.SUCCEEDED, None, 2)

    fresh = lifecycle.apply(None, submitted())
    cancelled = lifecycle.apply(fresh, Event(K.CANCELLED, fresh.id, 101.0, "n", {"reason": "x"}))
    assert (cancelled.state, cancelled.error) == (TaskState.CANCELLED, None)


def test_a_retried_task_keeps_a_schedule_still_ahead_and_otherwise_runs_now() -> None:
    delayed = lifecycle.apply(None, submitted(at=100.0, run_at=500.0))
    cancelled = lifecycle.apply(delayed, Event(K.CANCELLED, delayed.id, 101.0, "n"))
    again = lifecycle.apply(cancelled, retried(cancelled, 102.0))
    assert (again.state, again.run_at) == (TaskState.SCHEDULED, 500.0)
    late = lifecycle.apply(cancelled, retried(cancelled, 600.0))
    assert (late.state, late.run_at) == (TaskState.QUEUED, 600.0)


def test_a_held_task_ranks_after_a_ready_task_of_higher_priority_or_older_run_at() -> None:
    base = lifecycle.apply(None, submitted())
    high = attrs.evolve(base, priority=5)
    older = attrs.evolve(base, run_at=base.run_at - 1)
    assert lifecycle.ranks_before(high, base)
    assert lifecycle.ranks_before(older, base)
    assert not lifecycle.ranks_before(base, high)
    assert not lifecycle.ranks_before(base, base)


def test_a_submission_in_the_future_is_scheduled_and_one_due_now_is_queued() -> None:
    assert lifecycle.state_after(submitted(at=100.0, run_at=200.0)) is TaskState.SCHEDULED
    assert lifecycle.state_after(submitted(at=100.0)) is TaskState.QUEUED


def test_events_that_do_not_fit_the_task_are_refused() -> None:
    task = lifecycle.apply(None, submitted())
    with pytest.raises(InvalidTransition):
        lifecycle.apply(task, Event(K.SUCCEEDED, task.id, 101.0, "n"))
    with pytest.raises(InvalidTransition):
        lifecycle.apply(task, submitted())
    with pytest.raises(InvalidTransition):
        lifecycle.apply(None, Event(K.CLAIMED, "nobody", 101.0, "n"))


def test_a_failed_attempt_retries_until_the_attempts_are_spent() -> None:
    policy = RetryPolicy(base=2, factor=3, jitter=0)
    task = lifecycle.apply(None, submitted())
    task = run(task, 101.0)
    first = lifecycle.decide_failure(task, error="e1", timed_out=False, at=102.0, node="n",
                                     policy=policy, rng=random.Random(1))  # fmt: skip
    assert first.kind is K.FAILED
    assert first.data["retry_at"] == 104.0  # base * factor**0
    task = lifecycle.apply(task, first)
    assert (task.state, task.error, task.run_at) == (TaskState.SCHEDULED, "e1", 104.0)
    task = lifecycle.apply(task, Event(K.ENQUEUED, task.id, 104.0, "n"))
    task = run(task, 104.5)
    last = lifecycle.decide_failure(task, error="e2", timed_out=False, at=105.0, node="n",
                                    policy=policy, rng=random.Random(1))  # fmt: skip
    assert last.kind is K.DEAD_LETTERED
    assert lifecycle.apply(task, last).state is TaskState.DEAD


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        (Backoff.EXPONENTIAL, [1.0, 2.0, 4.0, 8.0, 10.0]),
        (Backoff.LINEAR, [1.0, 2.0, 3.0, 4.0, 5.0]),
        (Backoff.FIXED, [1.0, 1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_backoff_grows_as_configured_up_to_its_cap(backoff: Backoff, expected: list[float]) -> None:
    policy = RetryPolicy(backoff=backoff, base=1, factor=2, cap=10, jitter=0)
    rng = random.Random(0)
    assert [policy.delay(n, rng) for n in range(1, 6)] == expected


def test_jitter_draws_below_the_delay_and_spreads() -> None:
    policy = RetryPolicy(base=8, jitter=0.5)
    rng = random.Random(3)
    delays = [policy.delay(1, rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert max(delays) - min(delays) > 2.0


def test_an_outcome_may_carry_the_start_of_a_run_shorter_than_the_start_window() -> None:
    policy = RetryPolicy(base=1, jitter=0)
    task = lifecycle.apply(None, submitted())  # max_attempts 2
    held = lifecycle.apply(task, claimed(task, 101.0))
    done = Event(K.SUCCEEDED, held.id, 101.2, "n", {"result": 3, "started_at": 101.1}, "n/w1")
    assert lifecycle.carries_start(done)
    after = lifecycle.apply(held, done)
    assert (after.state, after.attempt, after.started_at, after.worker) == (
        TaskState.SUCCEEDED, 1, 101.1, "n/w1",
    )  # fmt: skip
    assert lifecycle.known_transition(done) == (TaskState.CLAIMED, TaskState.SUCCEEDED)
    # A failure that carries its start counts the attempt: the last one dead-letters.
    for at in (101.0, 201.0):
        held = lifecycle.apply(task, claimed(task, at))
        begun = started(held, at + 0.1)  # as the worker sees it; not journaled on its own
        running = lifecycle.apply(held, begun)
        event = lifecycle.decide_failure(running, error="boom", timed_out=False, at=at + 0.2,
                                         node="n", policy=policy, rng=random.Random(1))  # fmt: skip
        event = attrs.evolve(event, data={**event.data, "started_at": begun.at})
        task = lifecycle.apply(held, event)
        if task.state is TaskState.SCHEDULED:
            task = lifecycle.apply(task, Event(K.ENQUEUED, task.id, task.run_at, "n"))
    assert (task.state, task.attempt) == (TaskState.DEAD, 2)
    with pytest.raises(InvalidTransition):  # a queued task has no run to end
        lifecycle.apply(lifecycle.apply(None, submitted()), done)


def test_the_task_fold_passes_over_control_events_of_queues_and_schedules() -> None:
    steps = every_kind_in_a_life()
    events = [e for _, e in steps]
    # control rows interleaved (their kinds belong to their own folds)
    controls = [
        Event(EventKind.CANCELLED, "queue:default", 100.5, "n", {"paused": True}),
        Event(EventKind.CANCELLED, "schedule:nightly", 100.6, "n", {}),
    ]
    mixed = events[:3] + controls + events[3:]
    assert lifecycle.fold(mixed) == lifecycle.fold(events)
    assert is_control("queue:default")
    assert is_control("schedule:x")
    assert not any(is_control(e.task_id) for e in events)
