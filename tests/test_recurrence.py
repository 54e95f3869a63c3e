"""When schedules tick (cron in a time zone, every N seconds), what a late firing does under
each misfire setting, and the fold of schedule events: pure functions, no clock."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import attrs
import pytest

from actorq import recurrence
from actorq.errors import InvalidTransition
from actorq.model import Event, EventKind, Misfire, Schedule, ScheduleTask

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
TASK = ScheduleTask("echo", {"a": 1})


def at(*parts: int, tz: dt.tzinfo = dt.UTC) -> float:
    return dt.datetime(*parts, tzinfo=tz).timestamp()


def every(seconds: float, anchor: float = 1000.0, **kw: object) -> Schedule:
    return Schedule("s", TASK, every=seconds, anchor=anchor, **kw)


def cron(expr: str, tz: str = "UTC", **kw: object) -> Schedule:
    return Schedule("c", TASK, cron=expr, timezone=tz, **kw)


def test_every_ticks_on_a_grid_from_its_anchor_strictly_after_the_given_time() -> None:
    s = every(2.5)
    assert recurrence.next_tick(s, 1000.0) == 1002.5
    assert recurrence.next_tick(s, 1002.5) == 1005.0  # on a tick: the one after
    assert recurrence.next_tick(s, 1003.0) == 1005.0
    assert recurrence.next_tick(s, 999.0) == 1000.0
    big = every(1.0, anchor=1_764_220_000.123456)
    ticks = [big.anchor]
    for _ in range(1000):
        ticks.append(recurrence.next_tick(big, ticks[-1]))
    assert all(round(b - a, 6) == 1.0 for a, b in itertools.pairwise(ticks))


def test_cron_is_read_in_its_time_zone_across_daylight_saving() -> None:
    s = cron("0 3 * * *", "Europe/Paris")
    # Paris moves to summer time on 2026-03-29 at 02:00: 03:00 local is 02:00 UTC, then 01:00.
    first = recurrence.next_tick(s, at(2026, 3, 27, 12))
    second = recurrence.next_tick(s, first)
    third = recurrence.next_tick(s, second)
    local = [dt.datetime.fromtimestamp(t, PARIS) for t in (first, second, third)]
    assert [(d.day, d.hour, d.minute) for d in local] == [(28, 3, 0), (29, 3, 0), (30, 3, 0)]
    assert second - first == 23 * 3600  # the short night
    assert third - second == 24 * 3600
    utc = recurrence.next_tick(cron("0 3 * * *"), at(2026, 3, 27, 12))
    assert utc == at(2026, 3, 28, 3)


def test_a_late_firing_of_one_due_tick_runs_it_whatever_the_misfire() -> None:
    for misfire in Misfire:
        s = every(10, next_run_at=1010.0, misfire=misfire)
        firing = recurrence.plan_firing(s, 1019.9)  # late, but the next tick is not due yet
        assert firing == recurrence.Firing(1010.0, 0, 1020.0)


def test_after_downtime_skip_enqueues_nothing_and_run_once_one_task_for_the_missed_ticks() -> None:
    down = every(10, next_run_at=1010.0)
    skipped = recurrence.plan_firing(down, 1055.0)  # 1010..1050 passed: five ticks
    assert skipped == recurrence.Firing(None, 5, 1060.0)
    once = recurrence.plan_firing(attrs.evolve(down, misfire=Misfire.RUN_ONCE), 1055.0)
    assert once == recurrence.Firing(1050.0, 4, 1060.0)
    hourly = cron("0 * * * *", next_run_at=at(2026, 1, 1, 0), misfire=Misfire.RUN_ONCE)
    late = recurrence.plan_firing(hourly, at(2026, 1, 1, 5, 30))
    assert late == recurrence.Firing(at(2026, 1, 1, 5), 5, at(2026, 1, 1, 6))
    with pytest.raises(InvalidTransition):
        recurrence.plan_firing(down, 1000.0)  # not due yet


def test_saving_keeps_the_next_tick_unless_the_timing_changed_or_it_resumes() -> None:
    before = every(10, anchor=1000.0, next_run_at=1030.0)
    other = recurrence.plan_save(before, attrs.evolve(before, misfire=Misfire.RUN_ONCE), 1025.0)
    assert (other.anchor, other.next_run_at) == (1000.0, 1030.0)
    faster = recurrence.plan_save(before, attrs.evolve(before, every=4.0), 1025.0)
    assert (faster.anchor, faster.next_run_at) == (1025.0, 1029.0)
    paused = recurrence.plan_save(before, attrs.evolve(before, paused=True), 1025.0)
    assert paused.next_run_at is None
    resumed = recurrence.plan_save(paused, attrs.evolve(paused, paused=False), 1077.0)
    assert resumed.next_run_at == 1080.0  # from now on, on the same grid: no catching up
    new = recurrence.plan_save(None, cron("*/5 * * * *"), at(2026, 1, 1, 0, 7))
    assert new.next_run_at == at(2026, 1, 1, 0, 10)


def test_the_fold_reads_what_the_events_recorded() -> None:
    s = recurrence.plan_save(None, every(10, anchor=0.0), 1000.0)
    saved = attrs.evolve(recurrence.saved_event(s, at=1000.0, node="n"), seq=1)
    firing = recurrence.plan_firing(s, 1010.5)
    fired = attrs.evolve(recurrence.firing_event(s, firing, "t1", at=1010.5, node="n"), seq=2)
    late = recurrence.Firing(None, 3, 1050.0)
    skipped = attrs.evolve(recurrence.firing_event(s, late, None, at=1044.0, node="n"), seq=3)
    gone = attrs.evolve(recurrence.deleted_event(s, at=1045.0, node="n"), seq=4)
    state = recurrence.fold([saved, fired, skipped])
    (after,) = state.values()
    assert (after.fired, after.last_task_id, after.last_run_at) == (1, "t1", 1010.5)
    assert (after.next_run_at, after.seq, after.created_at) == (1050.0, 3, 1000.0)
    assert recurrence.fold([saved, fired, skipped, gone]) == {}
    again = attrs.evolve(saved, at=2000.0, seq=5)
    assert recurrence.fold([saved, gone, again])["s"].created_at == 2000.0
    task_event = Event(EventKind.SUBMITTED, "0b6c8e9a-3f0e-4f4e-9d59-1a1e0c3a2b7d", 1.0, "n")
    assert recurrence.fold([task_event, saved]) == recurrence.fold([saved])
    with pytest.raises(InvalidTransition):
        recurrence.apply(None, fired)  # a firing of a schedule that does not exist


def test_a_tick_task_carries_the_schedule_and_its_tick() -> None:
    s = every(10, next_run_at=1010.0)
    task = recurrence.task_of(s, recurrence.Firing(1050.0, 4, 1060.0), "id-1")
    assert task.metadata == {"schedule": "s", "tick": "1970-01-01T00:17:30.000000Z",
                             "missed_ticks": 4}  # fmt: skip
    assert (task.id, task.type, task.payload) == ("id-1", "echo", {"a": 1})
