"""When a schedule fires, and how its journal events change it.

The ticks of a schedule fall on its cron expression (read by croniter, in the schedule's IANA
time zone) or every so many seconds from its anchor. What time or the clock decide (the next
tick, how many ticks a firing stands for) is decided once, by ``plan_save`` and
``plan_firing``, and recorded in the event's data; ``apply`` only reads it, so replaying the
``schedule:NAME`` events gives back exactly the rows the live system wrote.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import zoneinfo
from typing import Any

import attrs
from croniter import CroniterError, croniter

from actorq.errors import InvalidInput, InvalidTransition
from actorq.model import (
    SCHEDULE_SUBJECT,
    Event,
    EventKind,
    Misfire,
    NewTask,
    Schedule,
    ScheduleTask,
)
from actorq.wire import iso

_K = EventKind
# A cron schedule down for very long: its missed ticks are counted up to this many.
MAX_COUNTED = 10_000


@functools.cache
def zones() -> frozenset[str]:
    """The IANA time zone names this machine knows (the tzdata package, or the system's)."""
    return frozenset(zoneinfo.available_timezones())


@functools.cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def ever_ticks(expr: str) -> bool:
    """Whether cron expression ``expr`` names a time that comes (not 30 February)."""
    try:
        croniter(expr, dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).get_next(float)
    except CroniterError:
        return False
    return True


def next_tick(schedule: Schedule, after: float) -> float:
    """The first tick of ``schedule`` strictly after ``after``."""
    every = schedule.every
    if every is not None:
        k = math.floor((after - schedule.anchor) / every) + 1
        tick = schedule.anchor + k * every
        return tick if tick > after else tick + every  # a rounding at the boundary
    if schedule.cron is None:
        raise ValueError(f"schedule {schedule.name!r} has neither cron nor every")
    start = dt.datetime.fromtimestamp(after, zone(schedule.timezone))
    try:
        return float(croniter(schedule.cron, start).get_next(float))
    except CroniterError as exc:  # refused when saved; a row written otherwise fails alone
        raise InvalidInput(
            f"schedule {schedule.name!r}: no next tick of {schedule.cron!r}"
        ) from exc


def plan_save(before: Schedule | None, schedule: Schedule, at: float) -> Schedule:
    """``schedule`` as saved at ``at`` over ``before``: its anchor and next tick decided.

    A schedule whose timing did not change keeps its next tick; one that changed, or resumes
    from a pause, starts again from ``at`` (the ticks of a pause are not missed, they were
    not wanted). A paused schedule has no next tick.
    """
    timing = (schedule.cron, schedule.every, schedule.timezone)
    same = before is not None and (before.cron, before.every, before.timezone) == timing
    anchor = before.anchor if same and before is not None else at
    planned = attrs.evolve(schedule, anchor=anchor)
    if schedule.paused:
        return attrs.evolve(planned, next_run_at=None)
    if same and before is not None and not before.paused and before.next_run_at is not None:
        return attrs.evolve(planned, next_run_at=before.next_run_at)
    return attrs.evolve(planned, next_run_at=next_tick(planned, at))


@attrs.frozen
class Firing:
    """What one firing of a due schedule does at ``at``.

    ``tick`` is the tick its task stands for (None: no task); ``missed`` the ticks before it
    that passed unfired (folded into this task, or skipped); ``next_run_at`` the next tick
    after ``at``.
    """

    tick: float | None
    missed: int
    next_run_at: float


def plan_firing(schedule: Schedule, at: float) -> Firing:
    """Fire ``schedule``, due at ``at``. Its one due tick runs, however late. If later ticks
    came due too, no node fired the earlier ones in time (every node was down): a misfire,
    which the schedule's ``misfire`` settles."""
    due = schedule.next_run_at
    if due is None or due > at:
        raise InvalidTransition(f"schedule {schedule.name!r} is not due")
    ticks, last = _due_ticks(schedule, due, at)
    after = next_tick(schedule, at)
    if ticks == 1:
        return Firing(due, 0, after)
    if schedule.misfire is Misfire.RUN_ONCE:
        return Firing(last, ticks - 1, after)
    return Firing(None, ticks, after)


def _due_ticks(schedule: Schedule, first: float, at: float) -> tuple[int, float]:
    """How many ticks from ``first`` are due at ``at``, and the last of them."""
    if schedule.every is not None:
        n = math.floor((at - first) / schedule.every) + 1
        return n, first + (n - 1) * schedule.every
    count, last = 1, first
    while count < MAX_COUNTED:
        following = next_tick(schedule, last)
        if following > at:
            return count, last
        count, last = count + 1, following
    return count, _last_before(schedule, at)


def _last_before(schedule: Schedule, at: float) -> float:
    start = dt.datetime.fromtimestamp(at, zone(schedule.timezone))
    return float(croniter(schedule.cron, start).get_prev(float))


def task_of(schedule: Schedule, firing: Firing, task_id: str) -> NewTask:
    """The task a firing enqueues: the schedule's, carrying its name and tick."""
    t = schedule.task
    metadata: dict[str, Any] = {"schedule": schedule.name, "tick": iso(firing.tick)}
    if firing.missed:
        metadata["missed_ticks"] = firing.missed
    return NewTask(t.type, t.payload, t.queue, t.priority, t.max_attempts, t.timeout,
                   metadata=metadata, id=task_id)  # fmt: skip


# -- events and the fold --------------------------------------------------------------------


def definition(schedule: Schedule) -> dict[str, Any]:
    """What a ``schedule_saved`` event records: everything an operator or the App decides."""
    return {
        "cron": schedule.cron,
        "every": schedule.every,
        "timezone": schedule.timezone,
        "paused": schedule.paused,
        "misfire": schedule.misfire.value,
        "task": attrs.asdict(schedule.task),
    }


def saved_event(schedule: Schedule, *, at: float, node: str) -> Event:
    data = {**definition(schedule), "anchor": schedule.anchor, "next_run_at": schedule.next_run_at}
    return Event(_K.SCHEDULE_SAVED, schedule.subject, at, node, data)


def deleted_event(schedule: Schedule, *, at: float, node: str) -> Event:
    return Event(_K.SCHEDULE_DELETED, schedule.subject, at, node)


def firing_event(schedule: Schedule, firing: Firing, task_id: str | None, *, at: float,
                 node: str) -> Event:  # fmt: skip
    data: dict[str, Any] = {"missed": firing.missed, "next_run_at": firing.next_run_at}
    if task_id is None:
        return Event(_K.SCHEDULE_SKIPPED, schedule.subject, at, node, data)
    data |= {"tick_at": firing.tick, "task_id": task_id}
    return Event(_K.SCHEDULE_FIRED, schedule.subject, at, node, data)


def apply(before: Schedule | None, e: Event) -> Schedule | None:
    """The schedule after event ``e`` (None: deleted)."""
    d = e.data
    if e.kind is _K.SCHEDULE_SAVED:
        return Schedule(
            e.task_id.removeprefix(SCHEDULE_SUBJECT), ScheduleTask(**d["task"]), d["cron"],
            d["every"], d["timezone"], d["paused"], Misfire(d["misfire"]), d["next_run_at"],
            before.last_run_at if before else None, before.last_task_id if before else None,
            before.fired if before else 0, before.created_at if before else e.at, e.at,
            d["anchor"], e.seq,
        )  # fmt: skip
    if before is None:
        raise InvalidTransition(f"{e.kind} of {e.task_id}, which does not exist")
    match e.kind:
        case _K.SCHEDULE_DELETED:
            return None
        case _K.SCHEDULE_FIRED:
            return attrs.evolve(
                before, next_run_at=d["next_run_at"], last_run_at=e.at,
                last_task_id=d["task_id"], fired=before.fired + 1, seq=e.seq,
            )  # fmt: skip
        case _K.SCHEDULE_SKIPPED:
            return attrs.evolve(before, next_run_at=d["next_run_at"], seq=e.seq)
    raise InvalidTransition(f"{e.kind} is not an event of a schedule")


def is_schedule_event(e: Event) -> bool:
    return e.task_id.startswith(SCHEDULE_SUBJECT)


def fold(events: list[Event], schedules: dict[str, Schedule] | None = None) -> dict[str, Schedule]:
    """Replay the schedule events among ``events`` (in seq order) onto ``schedules``."""
    out = {} if schedules is None else schedules
    for e in events:
        if not is_schedule_event(e):
            continue
        name = e.task_id.removeprefix(SCHEDULE_SUBJECT)
        after = apply(out.get(name), e)
        if after is None:
            out.pop(name, None)
        else:
            out[name] = after
    return out
