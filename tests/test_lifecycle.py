"""The lifecycle fold on its own: transitions, refusals, retry policy, and what a follower of
the journal can tell from an event without its task."""

from __future__ import annotations

import random

import pytest

from actorq import lifecycle
from actorq.errors import InvalidTransition
from actorq.model import Event, EventKind, NewTask, Task, TaskState

K = EventKind


def submitted(at: float = 100.0, run_at: float | None = None) -> Event:
    return lifecycle.submitted_event(NewTask("job", max_attempts=2, run_at=run_at), at=at, node="n")


def claimed(task: Task, at: float) -> Event:
    return Event(K.CLAIMED, task.id, at, "n", {"lease_expires_at": at + 30}, worker="n/w0")


def every_kind_in_a_life() -> list[tuple[Task | None, Event]]:
    """(task before, event) for at least one event of every kind, each fitting its task."""
    rng = random.Random(7)
    policy = lifecycle.RetryPolicy(base=1, jitter=0)
    steps: list[tuple[Task | None, Event]] = []

    def step(task: Task | None, event: Event) -> Task:
        steps.append((task, event))
        return lifecycle.apply(task, event)

    # scheduled -> queued -> running -> timed out (retry) -> queued -> running -> dead
    t = step(None, submitted(run_at=150.0))
    t = step(t, Event(K.ENQUEUED, t.id, 150.0, "n"))
    t = step(t, claimed(t, 151.0))
    t = step(t, lifecycle.decide_failure(t, error="slow", timed_out=True, at=152.0, node="n",
                                         policy=policy, rng=rng))  # fmt: skip
    t = step(t, Event(K.ENQUEUED, t.id, 153.0, "n"))
    t = step(t, claimed(t, 154.0))
    t = step(t, lifecycle.decide_failure(t, error="boom", timed_out=False, at=155.0, node="n",
                                         policy=policy, rng=rng))  # fmt: skip
    # retried by hand; a released attempt, a lease-expired one, then success
    t = step(t, Event(K.RETRIED, t.id, 156.0, "n"))
    t = step(t, claimed(t, 157.0))
    t = step(t, Event(K.RELEASED, t.id, 158.0, "n"))
    t = step(t, claimed(t, 159.0))
    t = step(t, lifecycle.decide_lease_expiry(t, at=160.0, node="n"))
    t = step(t, claimed(t, 161.0))
    step(t, Event(K.SUCCEEDED, t.id, 162.0, "n", {"result": 1}))
    # failed with a retry to come, cancelled while scheduled, then retried by hand
    q = step(None, submitted())
    q = step(q, claimed(q, 101.0))
    q = step(q, lifecycle.decide_failure(q, error="boom", timed_out=False, at=102.0, node="n",
                                         policy=policy, rng=rng))  # fmt: skip
    q = step(q, Event(K.CANCELLED, q.id, 102.5, "n", {"reason": "no"}))
    step(q, Event(K.RETRIED, q.id, 103.0, "n"))
    return steps


def test_a_task_lives_through_every_kind_of_event() -> None:
    steps = every_kind_in_a_life()
    assert {e.kind for _, e in steps} == set(EventKind)
    final = lifecycle.fold([e for _, e in steps])
    assert len(final) == 2
    states = sorted(t.state for t in final.values())
    assert states == sorted([TaskState.SUCCEEDED, TaskState.QUEUED])


def test_the_state_after_an_event_is_known_from_the_event_alone() -> None:
    for before, event in every_kind_in_a_life():
        after = lifecycle.apply(before, event)
        assert lifecycle.state_after(event) is after.state, event.kind
        transition = lifecycle.known_transition(event)
        if transition is not None:
            assert transition == (None if before is None else before.state, after.state)
        else:
            assert event.kind in (K.CANCELLED, K.RETRIED)


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
    policy = lifecycle.RetryPolicy(base=2, factor=3, jitter=0)
    task = lifecycle.apply(None, submitted())
    task = lifecycle.apply(task, claimed(task, 101.0))
    first = lifecycle.decide_failure(task, error="e1", timed_out=False, at=102.0, node="n",
                                     policy=policy, rng=random.Random(1))  # fmt: skip
    assert first.kind is K.FAILED
    assert first.data["retry_at"] == 104.0  # base * factor**0
    task = lifecycle.apply(task, first)
    assert (task.state, task.error, task.run_at) == (TaskState.SCHEDULED, "e1", 104.0)
    task = lifecycle.apply(task, Event(K.ENQUEUED, task.id, 104.0, "n"))
    task = lifecycle.apply(task, claimed(task, 104.5))
    last = lifecycle.decide_failure(task, error="e2", timed_out=False, at=105.0, node="n",
                                    policy=policy, rng=random.Random(1))  # fmt: skip
    assert last.kind is K.DEAD_LETTERED
    assert lifecycle.apply(task, last).state is TaskState.DEAD


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        (lifecycle.Backoff.EXPONENTIAL, [1.0, 2.0, 4.0, 8.0, 10.0]),
        (lifecycle.Backoff.LINEAR, [1.0, 2.0, 3.0, 4.0, 5.0]),
        (lifecycle.Backoff.FIXED, [1.0, 1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_backoff_grows_as_configured_up_to_its_cap(
    backoff: lifecycle.Backoff, expected: list[float]
) -> None:
    policy = lifecycle.RetryPolicy(backoff=backoff, base=1, factor=2, cap=10, jitter=0)
    rng = random.Random(0)
    assert [policy.delay(n, rng) for n in range(1, 6)] == expected


def test_jitter_draws_below_the_delay_and_spreads() -> None:
    policy = lifecycle.RetryPolicy(base=8, jitter=0.5)
    rng = random.Random(3)
    delays = [policy.delay(1, rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert max(delays) - min(delays) > 2.0
