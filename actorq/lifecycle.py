"""How journal events change a task: the one fold shared by the live path and by replay.

``apply`` is pure, so replaying the journal from the first row gives back exactly the
projection the live system wrote. Decisions that involve time or chance (when to retry) are
made once, by ``decide_failure``, and recorded in the event's data; the fold only reads them.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable
from typing import Any

import attrs

from actorq.errors import InvalidTransition
from actorq.model import (
    FINISHED_STATES,
    REMOVING_KINDS,
    Event,
    EventKind,
    NewTask,
    Progress,
    Task,
    TaskState,
    is_control,
)
from actorq.retry import RetryPolicy, policy_from_stored, policy_json

_S = TaskState
_K = EventKind


def submitted_event(new: NewTask, *, at: float, node: str) -> Event:
    data: dict[str, Any] = {
        "type": new.type,
        "queue": new.queue,
        "payload": new.payload,
        "priority": new.priority,
        "max_attempts": new.max_attempts,
        "timeout": new.timeout,
        "run_at": at if new.run_at is None else new.run_at,
        "metadata": new.metadata,
        "idempotency_key": new.idempotency_key,
    }
    if new.retry is not None:  # chosen now, so every later decision and replay use it
        data["retry"] = policy_json(new.retry)
    return Event(_K.SUBMITTED, new.id, at, node, data)


def claimed_event(task_id: str, worker: str, *, at: float, node: str, until: float) -> Event:
    """A worker takes the task in hand on a lease until ``until``; its handler has not
    started. ``held`` tells this claim from the claims of journals written before a claim
    and a start were two events (there, a claim was the start: see ``_changes``)."""
    return Event(_K.CLAIMED, task_id, at, node, {"lease_expires_at": until, "held": True}, worker)


def decide_failure(
    task: Task,
    *,
    error: str,
    timed_out: bool,
    at: float,
    node: str,
    policy: RetryPolicy,
    rng: random.Random,
    permanent: str | None = None,
) -> Event:
    """The event for a failed attempt: a retry at a chosen time, or the dead-letter queue
    (at once for a ``permanent`` failure, whose reason it names)."""
    reason = permanent or ("timed_out" if timed_out else "failed")
    if permanent is not None or task.attempt >= task.max_attempts:
        return _dead_letter(task, at, node, error, reason)
    retry_at = at + policy.delay(task.attempt, rng)
    kind = _K.TIMED_OUT if timed_out else _K.FAILED
    return Event(kind, task.id, at, node, {"error": error, "retry_at": retry_at}, task.worker)


def decide_lease_expiry(task: Task, *, at: float, node: str) -> Event:
    """A held task whose lease ran out: back to the queue; a running one spent its attempt
    (its handler started), so it is dead-lettered when it was the last."""
    if task.state is _S.RUNNING and task.attempt >= task.max_attempts:
        error = "lease expired: the worker running it stopped"
        return _dead_letter(task, at, node, error, "lease_expired")
    return Event(_K.LEASE_EXPIRED, task.id, at, node, {}, worker=task.worker)


def decide_retry(task: Task, event: Event) -> Event:
    """A manual retry, with the time it runs at recorded: the task's own schedule if that
    still lies ahead (a cancelled delayed task keeps it), else now."""
    if "run_at" in event.data:
        return event
    data = {**event.data, "run_at": max(task.run_at, event.at)}
    return Event(event.kind, event.task_id, event.at, event.node, data, event.worker, event.seq)


def retried_event(task: Task, *, at: float, node: str, by: str) -> Event:
    """A manual retry of a dead or cancelled task, saying who asked for it."""
    return decide_retry(task, Event(_K.RETRIED, task.id, at, node, {"by": by}))


def purged_event(task: Task, *, at: float, node: str, by: str) -> Event:
    """A dead letter leaves the projection at an operator's word (``by``)."""
    data = {"state": task.state.value, "queue": task.queue, "by": by}
    return Event(_K.PURGED, task.id, at, node, data)


def expired_event(task: Task, *, at: float, node: str, retention: float) -> Event:
    """A task finished more than ``retention`` seconds ago leaves the projection."""
    data = {"state": task.state.value, "queue": task.queue, "retention": retention}
    return Event(_K.EXPIRED, task.id, at, node, data)


def removes(event: Event) -> bool:
    """Whether the task leaves the live projection with ``event`` (its history stays)."""
    return event.kind in REMOVING_KINDS


def ranks_before(a: Task, b: Task) -> bool:
    """Whether ``a`` must run before ``b``: a higher priority, or the same one and an earlier
    run_at (FIFO within a priority). On a tie neither does: ``seq`` breaks ties in the claim
    order, but it moves with every event, so it says nothing about who came first."""
    return rank(a) < rank(b)


@attrs.frozen
class Ceiling:
    """What a node knows of the best ready task it could claim: ``known`` false when work may
    have become ready unseen; ``rank`` (-priority, run_at) of that task, None when nothing
    is ready. A held task whose rank is not after it cannot be outranked: it starts at once.
    """

    known: bool = False
    rank: tuple[int, float] | None = None

    def may_outrank(self, task: Task) -> bool:
        if not self.known:
            return True
        return self.rank is not None and self.rank < rank(task)

    def with_news(self, news: tuple[int, float] | None, unseen: bool = False) -> Ceiling:
        """The ceiling once work of rank ``news`` became ready (``unseen``: of unknown rank)."""
        if unseen or not self.known:
            return Ceiling()
        if news is None or (self.rank is not None and self.rank <= news):
            return self
        return Ceiling(True, news)


def rank(task: Task) -> tuple[int, float]:
    """The claim order's key, without seq: see ``ranks_before``."""
    return (-task.priority, task.run_at)


def _dead_letter(task: Task, at: float, node: str, error: str, reason: str) -> Event:
    data = {"error": error, "reason": reason}
    return Event(_K.DEAD_LETTERED, task.id, at, node, data, worker=task.worker)


def _require(task: Task | None, event: Event, *allowed: TaskState) -> Task:
    if task is None:
        raise InvalidTransition(f"{event.kind} for unknown task {event.task_id}")
    if task.state not in allowed:
        raise InvalidTransition(f"task {task.id} is {task.state}; cannot apply {event.kind}")
    return task


def _submit(event: Event) -> Task:
    d = event.data
    run_at = float(d["run_at"])
    return Task(
        id=event.task_id,
        type=d["type"],
        queue=d["queue"],
        payload=d["payload"],
        priority=int(d["priority"]),
        state=state_after(event),
        attempt=0,
        max_attempts=int(d["max_attempts"]),
        timeout=d["timeout"],
        run_at=run_at,
        created_at=event.at,
        updated_at=event.at,
        seq=event.seq,
        metadata=d["metadata"],
        idempotency_key=d["idempotency_key"],
        retry=None if d.get("retry") is None else policy_from_stored(d["retry"]),
    )


def _finish(event: Event, state: TaskState, **changes: Any) -> dict[str, Any]:
    return {"state": state, "finished_at": event.at, "lease_expires_at": None, **changes}


def _requeue(event: Event, **changes: Any) -> dict[str, Any]:
    base = {"state": _S.QUEUED, "run_at": event.at, "worker": None, "lease_expires_at": None}
    return {**base, **changes}


def _ran(task: Task | None, e: Event) -> tuple[Task, dict[str, Any]]:
    """The task whose attempt ``e`` ends, and what its start changes: nothing for a running
    one; for a held one whose handler ended before its start was written, the outcome carries
    the start (``started_at`` in its data): one event for both, for the short tasks that are
    most of them."""
    if task is not None and task.state is _S.CLAIMED and "started_at" in e.data:
        started = float(e.data["started_at"])
        start = {
            "attempt": task.attempt + 1,
            "started_at": started,
            "worker": e.worker or task.worker,
        }
        return task, start
    return _require(task, e, _S.RUNNING), {}


def carries_start(event: Event) -> bool:
    """Whether ``event`` ends an attempt whose start it also records (see ``_ran``)."""
    return "started_at" in event.data and event.kind in _ENDS


def _give_back(task: Task, event: Event) -> dict[str, Any]:
    """A task given back by its worker or its lease: a held one goes back to its place in the
    queue (run_at kept) with its attempts intact; a running one goes to the back."""
    if task.state is _S.CLAIMED:
        return _requeue(event, run_at=task.run_at)
    return _requeue(event)


def _retry_run_at(task: Task, event: Event) -> float:
    """A manual retry keeps a schedule that still lies ahead; otherwise it runs now."""
    return max(float(event.data.get("run_at", event.at)), event.at)


def _retried(task: Task | None, e: Event) -> tuple[Task, dict[str, Any]]:
    """A manual retry: a fresh attempt budget, due at its recorded run_at."""
    t = _require(task, e, _S.DEAD, _S.CANCELLED)
    run_at = _retry_run_at(t, e)
    state = _S.SCHEDULED if run_at > e.at else _S.QUEUED
    return t, _requeue(
        e, state=state, run_at=run_at, attempt=0, error=None, result=None,
        started_at=None, finished_at=None,
    )  # fmt: skip


def _cancel(task: Task | None, e: Event) -> tuple[Task, dict[str, Any]]:
    """The reason is in the event; ``error`` stays the last attempt's error, if any. A
    handler that cancelled its task in its first moments: the cancel carries the start."""
    if carries_start(e):
        t, start = _ran(task, e)
        return t, start | _finish(e, _S.CANCELLED)
    t = _require(task, e, _S.QUEUED, _S.SCHEDULED, _S.CLAIMED, _S.RUNNING)
    return t, _finish(e, _S.CANCELLED)


def _snooze(task: Task | None, e: Event) -> tuple[Task, dict[str, Any]]:
    """Due again at the event's run_at; the snoozed run gives its attempt back (the number
    before it started)."""
    t, start = _ran(task, e)
    attempt = t.attempt if start else t.attempt - 1
    run_at = float(e.data["run_at"])
    return t, start | {
        "state": _S.SCHEDULED if run_at > e.at else _S.QUEUED,
        "run_at": run_at,
        "attempt": max(attempt, 0),
        "worker": None,
        "lease_expires_at": None,
    }


def _changes(task: Task | None, e: Event) -> tuple[Task, dict[str, Any]]:
    """The task an event applies to, and the fields the event changes."""
    own = _OWN_FOLD.get(e.kind)
    if own is not None:
        return own(task, e)
    d = e.data
    match e.kind:
        case _K.ENQUEUED:
            return _require(task, e, _S.SCHEDULED), {"state": _S.QUEUED}
        case _K.CLAIMED if d.get("held"):
            t = _require(task, e, _S.QUEUED)
            return t, {
                "state": _S.CLAIMED,
                "worker": e.worker,
                "lease_expires_at": d["lease_expires_at"],
                "started_at": None,  # this attempt's handler has not started
            }
        case _K.CLAIMED:  # a journal from before held tasks: the claim was the start
            t = _require(task, e, _S.QUEUED)
            return t, {
                "state": _S.RUNNING,
                "attempt": t.attempt + 1,
                "started_at": e.at,
                "worker": e.worker,
                "lease_expires_at": d["lease_expires_at"],
            }
        case _K.STARTED:
            t = _require(task, e, _S.CLAIMED)
            # The worker that runs it: a task handed over inside a node starts on another
            # worker than the one that claimed it.
            return t, {
                "state": _S.RUNNING,
                "attempt": t.attempt + 1,
                "started_at": e.at,
                "worker": e.worker or t.worker,
                "lease_expires_at": d.get("lease_expires_at", t.lease_expires_at),
                "progress": None,  # a new attempt starts from nothing
            }
        case _K.PROGRESS:
            t = _require(task, e, _S.RUNNING)
            return t, {"progress": Progress(float(d["fraction"]), d.get("message"), e.at)}
        case _K.SUCCEEDED:
            t, start = _ran(task, e)
            return t, start | _finish(
                e, _S.SUCCEEDED, result=d.get("result"), error=None, worker=e.worker or t.worker
            )
        case _K.FAILED | _K.TIMED_OUT:
            t, start = _ran(task, e)
            return t, start | {
                "state": _S.SCHEDULED,
                "run_at": float(d["retry_at"]),
                "error": d["error"],
                "worker": None,
                "lease_expires_at": None,
            }
        case _K.DEAD_LETTERED:
            t, start = _ran(task, e)
            return t, start | _finish(e, _S.DEAD, error=d["error"])
        case _K.LEASE_EXPIRED:
            t = _require(task, e, _S.CLAIMED, _S.RUNNING)
            return t, _give_back(t, e)
        case _K.RELEASED:
            t = _require(task, e, _S.CLAIMED, _S.RUNNING)
            # A stopping node gives a running task back unfinished: that attempt is not spent.
            return t, {**_give_back(t, e), "attempt": max(t.attempt - (t.state is _S.RUNNING), 0)}
    raise InvalidTransition(f"cannot apply {e.kind!r} to task {e.task_id}")


# Kinds whose changes have a function of their own.
_OWN_FOLD: dict[EventKind, Callable[[Task | None, Event], tuple[Task, dict[str, Any]]]] = {
    _K.RETRIED: _retried,
    _K.CANCELLED: _cancel,
    _K.SNOOZED: _snooze,
}

_TASK_FIELDS = tuple(a.name for a in attrs.fields(Task))
_TASK_VALUES = operator.attrgetter(*_TASK_FIELDS)  # every field of a task, in one C call
_FIELD_AT = {name: i for i, name in enumerate(_TASK_FIELDS)}


def apply(task: Task | None, event: Event) -> Task:
    """The task after ``event``; raises InvalidTransition if the event does not fit."""
    if event.kind is _K.SUBMITTED:
        if task is not None:
            raise InvalidTransition(f"task {event.task_id} was already submitted")
        return _submit(event)
    if event.kind in REMOVING_KINDS:
        # Only checked here: the projection drops the task (see ``removes``).
        allowed = (_S.DEAD,) if event.kind is _K.PURGED else tuple(FINISHED_STATES)
        before, changes = _require(task, event, *allowed), dict[str, Any]()
    else:
        before, changes = _changes(task, event)
    changes["seq"] = event.seq
    changes["updated_at"] = event.at
    # One constructor call instead of attrs.evolve: this runs for every event on the hot path.
    values = list(_TASK_VALUES(before))
    for name, value in changes.items():
        values[_FIELD_AT[name]] = value
    return Task(*values)


_STATE_AFTER = {
    _K.PROGRESS: _S.RUNNING,
    _K.ENQUEUED: _S.QUEUED,
    _K.CLAIMED: _S.CLAIMED,
    _K.STARTED: _S.RUNNING,
    _K.SUCCEEDED: _S.SUCCEEDED,
    _K.FAILED: _S.SCHEDULED,
    _K.TIMED_OUT: _S.SCHEDULED,
    _K.DEAD_LETTERED: _S.DEAD,
    _K.LEASE_EXPIRED: _S.QUEUED,
    _K.RELEASED: _S.QUEUED,
    _K.CANCELLED: _S.CANCELLED,
    _K.RETRIED: _S.QUEUED,
}


def state_after(event: Event) -> TaskState:
    """The state a task is in right after ``event``, known from the event alone (a follower
    of the journal needs no task for it): ``apply(task, event).state`` for any task it fits."""
    if event.kind is _K.SUBMITTED:
        return _S.SCHEDULED if float(event.data["run_at"]) > event.at else _S.QUEUED
    if event.kind is _K.RETRIED:
        return _S.SCHEDULED if float(event.data.get("run_at", event.at)) > event.at else _S.QUEUED
    if event.kind in REMOVING_KINDS:
        return TaskState(event.data["state"])  # the state it left the projection in
    if event.kind is _K.SNOOZED:
        return _S.SCHEDULED if float(event.data["run_at"]) > event.at else _S.QUEUED
    if event.kind is _K.CLAIMED and not event.data.get("held"):
        return _S.RUNNING  # a claim from before held tasks (see ``_changes``)
    return _STATE_AFTER[event.kind]


# Events that end an attempt, and so may carry its start. A cancellation ends one only when
# its handler raised ``Cancel`` (the start is then in its data).
_ENDS = frozenset(
    {_K.SUCCEEDED, _K.FAILED, _K.TIMED_OUT, _K.DEAD_LETTERED, _K.SNOOZED, _K.CANCELLED}
)

_STATE_BEFORE = {
    _K.PROGRESS: _S.RUNNING,
    _K.ENQUEUED: _S.SCHEDULED,
    _K.CLAIMED: _S.QUEUED,
    _K.STARTED: _S.CLAIMED,
    _K.SUCCEEDED: _S.RUNNING,
    _K.FAILED: _S.RUNNING,
    _K.TIMED_OUT: _S.RUNNING,
    _K.DEAD_LETTERED: _S.RUNNING,
    _K.SNOOZED: _S.RUNNING,
}


def known_transition(event: Event) -> tuple[TaskState | None, TaskState] | None:
    """(state before, state after) of ``event`` from the event alone, before None for a
    submission; None for the kinds whose before-state depends on the task (a cancellation,
    a manual retry, a lease expiry or release of a held or running task) and for the kinds
    after which the task is gone (a purge, an expiry)."""
    if event.kind is _K.SUBMITTED:
        return None, state_after(event)
    before = _STATE_BEFORE.get(event.kind)
    if before is _S.RUNNING and carries_start(event):
        before = _S.CLAIMED
    return None if before is None else (before, state_after(event))


def fold(events: list[Event], tasks: dict[str, Task] | None = None) -> dict[str, Task]:
    """Replay events (in seq order) onto a projection; a fresh one when ``tasks`` is None."""
    out = {} if tasks is None else tasks
    for event in events:
        if is_control(event.task_id):
            continue  # a queue's or a schedule's: not a task's
        after = apply(out.get(event.task_id), event)
        if event.kind in REMOVING_KINDS:
            del out[event.task_id]
        else:
            out[event.task_id] = after
    return out
