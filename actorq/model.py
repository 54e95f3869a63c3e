"""The domain's values: tasks, their states, journal events, and the requests that create them.

Everything here is a plain attrs value; the rules for how events change a task live in
``lifecycle.py``. Times are POSIX seconds (floats) inside the system and ISO 8601 at the edge.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from typing import Annotated, Any, Protocol

import attrs

from actorq.retry import RetryPolicy

_RANDOM_BITS = 74  # a UUIDv7's bits beside its time, version and variant
_ids = threading.Lock()
_last = (0, 0)  # the last id's millisecond and random part


def new_id() -> str:
    """A fresh task id: a UUIDv7 (RFC 9562): 48 bits of Unix time in milliseconds, then 74
    random bits. Ids sort by creation time, and those one process makes sort in the order it
    made them: within one millisecond each id adds a random step to the one before (RFC 9562
    section 6.2, method 2). The time is the clock's: a burst of ids does not push it ahead,
    as a library that adds a millisecond per id did (20,000 ids ran 20 s into the future)."""
    global _last
    now = time.time_ns() // 1_000_000
    with _ids:
        last_ms, last_bits = _last
        if now > last_ms:
            ms, bits = now, int.from_bytes(os.urandom(10)) >> 6
        else:  # the same millisecond (or the clock went back): follow the last id
            step = 1 + (int.from_bytes(os.urandom(4)) >> 1)
            ms, bits = last_ms, last_bits + step
            if bits >> _RANDOM_BITS:  # the random part ran out: the next millisecond
                ms, bits = last_ms + 1, bits & ((1 << (_RANDOM_BITS - 1)) - 1)
        _last = (ms, bits)
    value = (ms << 80) | (0x7 << 76) | ((bits >> 62) << 64) | (0b10 << 62)
    value |= bits & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class PosixTime:
    """Marks a float of POSIX seconds as a time: the wire shows it as ISO 8601 UTC
    (``actorq.wire``), while code inside sees a plain float."""


Instant = Annotated[float, PosixTime]


class TaskState(enum.StrEnum):
    """Where a task stands. ``claimed``: a worker holds it ahead of time (prefetch), its
    handler has not started and no attempt is counted; ``running``: a handler runs it."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    CLAIMED = "claimed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset({TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED})
LIVE_STATES = frozenset(
    {TaskState.SCHEDULED, TaskState.QUEUED, TaskState.CLAIMED, TaskState.RUNNING}
)
HELD_STATES = frozenset({TaskState.CLAIMED, TaskState.RUNNING})  # a worker has it, on a lease


class EventKind(enum.StrEnum):
    SUBMITTED = "submitted"
    ENQUEUED = "enqueued"  # a scheduled or retrying task became due
    CLAIMED = "claimed"  # a worker holds it; its handler has not started
    STARTED = "started"  # its handler started: the attempt counts from here
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    LEASE_EXPIRED = "lease_expired"
    RELEASED = "released"  # a worker gave back a task it had not finished (or not started)
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead_lettered"
    RETRIED = "retried"  # manual retry of a dead or cancelled task
    # The task leaves the live projection; its history stays in the journal. ``data.state``
    # is the (finished) state it left in.
    PURGED = "purged"  # an operator purged a dead letter
    EXPIRED = "expired"  # a finished task outlived the retention period
    # Control events (subject ``queue:NAME``, see below): an operator changed the settings
    # named in the event's data (actorq.queues).
    QUEUE_CONFIGURED = "queue_configured"
    SNOOZED = "snoozed"  # its handler asked to run again later; the attempt is not spent
    # Control events of schedules (subject ``schedule:NAME``), folded by ``actorq.recurrence``.
    SCHEDULE_SAVED = "schedule_saved"  # created, changed, paused or resumed: its whole definition
    SCHEDULE_DELETED = "schedule_deleted"
    SCHEDULE_FIRED = "schedule_fired"  # a tick enqueued its task (in the same transaction)
    SCHEDULE_SKIPPED = "schedule_skipped"  # missed ticks passed over (misfire "skip")
    # Its running handler reported how far it got (``TaskContext.progress``): at most one a
    # second per task; the task keeps the last one as ``progress``.
    PROGRESS = "progress"


# Events after which a task is no longer in the ``tasks`` projection.
REMOVING_KINDS = frozenset({EventKind.PURGED, EventKind.EXPIRED})


# Control events: journal rows whose subject is not a task but a queue's settings or a
# schedule. Their ``task_id`` column holds the subject, ``queue:NAME`` or ``schedule:NAME``
# (task ids are UUIDs, so the two never meet); the task fold skips them and each subject kind
# has a fold of its own.
QUEUE_SUBJECT = "queue:"
SCHEDULE_SUBJECT = "schedule:"
CONTROL_SUBJECTS = (QUEUE_SUBJECT, SCHEDULE_SUBJECT)


def is_control(task_id: str) -> bool:
    """Whether a journal row with this ``task_id`` is a control event, not a task's."""
    return task_id.startswith(CONTROL_SUBJECTS)


@attrs.frozen
class Progress:
    """How far a running handler said it got: a fraction from 0 to 1, a message, and when."""

    fraction: float
    message: str | None
    at: Instant


@attrs.frozen
class Task:
    """One row of the ``tasks`` projection: the state the journal's events add up to."""

    id: str
    type: str
    queue: str
    payload: Any
    priority: int
    state: TaskState
    attempt: int
    max_attempts: int
    timeout: float | None
    run_at: Instant
    created_at: Instant
    updated_at: Instant
    seq: int = 0  # seq of the last journal event applied
    metadata: dict[str, Any] = attrs.field(factory=dict)
    idempotency_key: str | None = None
    result: Any = None
    error: str | None = None
    started_at: Instant | None = None
    finished_at: Instant | None = None
    worker: str | None = None
    # Lease of a running task. Heartbeats move it without an event, so a replay cannot
    # reproduce it and comparisons leave it out (see ``Task.audit_view``).
    lease_expires_at: Instant | None = None
    # The retry policy chosen at submission (None: submitted before policies were recorded;
    # its type's or the node's applies).
    retry: RetryPolicy | None = None
    # The last progress its handler reported (this attempt's: a new start clears it).
    progress: Progress | None = None

    def audit_view(self) -> Task:
        return attrs.evolve(self, lease_expires_at=None)


@attrs.frozen
class Event:
    """One journal row. ``seq`` is 0 until the journal assigns it."""

    kind: EventKind
    task_id: str
    at: Instant
    node: str
    data: dict[str, Any] = attrs.field(factory=dict)
    worker: str | None = None
    seq: int = 0
    # Who did it: a token's name (API), ``cli:USER@HOST`` (command line) or the node (what the
    # runtime decided itself). None until the journal fills it in; None in events written
    # before actors were recorded.
    actor: str | None = None


class TypeDefaults(Protocol):
    """What a submission of a task type inherits when it does not say otherwise."""

    @property
    def queue(self) -> str: ...

    @property
    def priority(self) -> int: ...

    @property
    def max_attempts(self) -> int: ...

    @property
    def timeout(self) -> float | None: ...

    @property
    def retry(self) -> RetryPolicy | None: ...


@attrs.frozen
class NewTask:
    """A validated submission; ``run_at`` of None means now."""

    type: str
    payload: Any = None
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    timeout: float | None = None
    run_at: float | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)
    idempotency_key: str | None = None
    id: str = attrs.field(factory=lambda: new_id())
    retry: RetryPolicy | None = None  # None: chosen when submitted (see ``actorq.retry``)


class Misfire(enum.StrEnum):
    """What a schedule does with the ticks that passed while no node could fire them."""

    SKIP = "skip"  # no task for them: the schedule goes on at its next future tick
    RUN_ONCE = "run_once"  # one task stands for all of them


@attrs.frozen
class ScheduleTask:
    """What each tick of a schedule enqueues: the task type's defaults are filled in when the
    schedule is saved, so a firing needs nothing but the schedule's row."""

    type: str
    payload: Any = None
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    timeout: float | None = None


@attrs.frozen
class Schedule:
    """One row of the ``schedules`` projection: a recurring task, by ``cron`` (in
    ``timezone``) or ``every`` so many seconds. ``next_run_at`` is None while it is paused."""

    name: str
    task: ScheduleTask
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    paused: bool = False
    misfire: Misfire = Misfire.SKIP
    next_run_at: Instant | None = None
    last_run_at: Instant | None = None  # when its last task was enqueued
    last_task_id: str | None = None
    fired: int = 0  # tasks enqueued so far
    created_at: Instant = 0.0
    updated_at: Instant = 0.0  # of its definition
    anchor: float = 0.0  # ``every`` ticks fall at anchor + k * every
    seq: int = 0  # seq of the last journal event applied

    @property
    def subject(self) -> str:
        return SCHEDULE_SUBJECT + self.name


@attrs.frozen
class TaskFilter:
    state: TaskState | None = None
    queue: str | None = None
    type: str | None = None
    by: str | None = None  # the actor of the task's submitted event


@attrs.frozen
class Page:
    tasks: list[Task]
    next_cursor: str | None
