"""Schedules (recurring tasks): what a schedule's definition may say, and the operations on
schedules that the API, the CLI and the ``App`` share.

A definition is checked in full here, before it reaches the journal: its name, exactly one of
``cron`` (five fields or an ``@`` alias, read by croniter) and ``every`` (seconds, at least
one), an IANA ``timezone``, ``misfire``, ``paused``, and the task each tick enqueues, whose
type must be served by the cluster and whose defaults are filled in now. The operations go
through a ``write`` of journal operations: a node's writer, or the journal itself for a
command line that runs no node.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from croniter import croniter

from actorq import recurrence, wire
from actorq.errors import InvalidInput, InvalidTransition
from actorq.journal.base import DeleteSchedule, Journal, Op, SaveMode, SaveSchedule
from actorq.model import Misfire, Schedule, ScheduleTask
from actorq.nodes import Catalog
from actorq.recurrence import zones

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
EVERY_MIN = 1.0  # seconds: a tick per second at most
EVERY_MAX = 315_360_000.0  # ten years
FIELDS = frozenset({"name", "cron", "every", "timezone", "task", "paused", "misfire"})
TASK_FIELDS = frozenset({"type", "payload", "queue", "priority", "max_attempts", "timeout"})
_CRON_FIELDS = 5
_UPDATE_TRIES = 3


def _refuse(field: str, why: str) -> InvalidInput:
    return InvalidInput(f"field {field!r} {why}")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _refuse("name", "must be 1 to 100 letters, digits, '.', '_' or '-', starting "
                      "with a letter or digit")  # fmt: skip
    return name


def _cron(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise _refuse("cron", "must be a cron expression string")
    expr = " ".join(value.split())
    fields = expr.split(" ")
    alias = len(fields) == 1 and expr.startswith("@")
    if not (alias or len(fields) == _CRON_FIELDS) or not croniter.is_valid(expr):
        raise _refuse(
            "cron",
            "must be a cron expression of five fields (minute hour day-of-month month "
            f"day-of-week) or an @ alias, got {value[:60]!r}",
        )
    if not recurrence.ever_ticks(expr):
        raise _refuse("cron", f"names no time that ever comes (such as 30 February): {expr!r}")
    return expr


def _every(value: Any) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not EVERY_MIN <= value <= EVERY_MAX:  # NaN fails the comparison too
        raise _refuse("every", f"must be a number of seconds from {EVERY_MIN:g} to {EVERY_MAX:g}")
    return float(value)


def _timezone(value: Any) -> str:
    if not isinstance(value, str) or value not in zones():
        shown = repr(value)[:60]
        raise _refuse("timezone", f"must be an IANA time zone name such as 'UTC' or "
                      f"'Europe/Paris', got {shown}")  # fmt: skip
    return value


def _misfire(value: Any) -> Misfire:
    if value not in ("skip", "run_once"):
        raise _refuse("misfire", "must be 'skip' or 'run_once'")
    return Misfire(value)


def _paused(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _refuse("paused", "must be true or false")
    return value


def _task(value: Any, catalog: Catalog, now: float) -> ScheduleTask:
    """The task each tick enqueues, its type's defaults filled in (an unknown type raises
    ``UnknownTaskType``, a 422)."""
    if not isinstance(value, dict):
        raise _refuse("task", "must be an object with at least a 'type'")
    extra = sorted(set(value) - TASK_FIELDS)
    if extra:
        raise _refuse("task", f"has unknown field(s): {', '.join(map(str, extra))[:200]}")
    try:
        new = wire.new_task(value, catalog.get, now)
    except InvalidInput as exc:
        raise InvalidInput(f"task: {exc}") from None
    return ScheduleTask(new.type, new.payload, new.queue, new.priority, new.max_attempts,
                        new.timeout)  # fmt: skip


def _fields(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput("a schedule must be a JSON object")
    extra = sorted(set(data) - FIELDS)
    if extra:
        raise InvalidInput(f"unknown field(s): {', '.join(map(str, extra))[:200]}")
    return data


def parse_schedule(data: Any, catalog: Catalog, now: float) -> Schedule:
    """A new schedule's definition from ``POST /api/v1/schedules``'s body."""
    fields = _fields(data)
    if "task" not in fields:
        raise _refuse("task", "is required")
    base = Schedule(check_name(fields.get("name")), ScheduleTask("?"))
    return _merge(base, fields, catalog, now, new=True)


def parse_change(current: Schedule, data: Any, catalog: Catalog, now: float) -> Schedule:
    """``current`` with the fields of a ``PATCH`` body: ``cron`` replaces ``every`` and the
    other way round; ``task`` replaces the whole task. The name cannot change."""
    fields = _fields(data)
    if "name" in fields and fields["name"] != current.name:
        raise _refuse("name", "cannot change: delete the schedule and create another")
    return _merge(current, fields, catalog, now, new=False)


def _merge(
    base: Schedule, fields: Mapping[str, Any], catalog: Catalog, now: float, *, new: bool
) -> Schedule:
    cron, every = fields.get("cron"), fields.get("every")
    if cron is not None and every is not None:
        raise InvalidInput("give either 'cron' or 'every', not both")
    if cron is None and every is None and (new or "cron" in fields or "every" in fields):
        raise InvalidInput("a schedule needs 'cron' (an expression) or 'every' (seconds)")
    changes: dict[str, Any] = {}
    if cron is not None:
        changes |= {"cron": _cron(cron), "every": None}
    if every is not None:
        changes |= {"every": _every(every), "cron": None}
    for name, check in (("timezone", _timezone), ("misfire", _misfire), ("paused", _paused)):
        if name in fields:
            changes[name] = check(fields[name])
    if "task" in fields:
        changes["task"] = _task(fields["task"], catalog, now)
    return attrs.evolve(base, **changes)


class Schedules:
    """The operations on schedules, through ``write`` (one journal operation, its result
    returned or its error raised) and reads of ``journal``."""

    def __init__(
        self,
        journal: Journal,
        write: Callable[[Op], Awaitable[Any]],
        node: str,
        clock: Callable[[], float],
    ) -> None:
        self._journal = journal
        self._write = write
        self._node = node
        self._clock = clock

    async def list(self) -> list[Schedule]:
        return await self._journal.schedules()

    async def get(self, name: str) -> Schedule:
        return await self._journal.get_schedule(name)

    async def create(self, schedule: Schedule) -> Schedule:
        """Raises ``DuplicateSchedule`` if the name is taken."""
        return await self._save(schedule, SaveMode.CREATE)

    async def change(self, name: str, edit: Callable[[Schedule], Schedule]) -> Schedule:
        """Apply ``edit`` to the schedule as it is now; if it changed meanwhile (another node,
        another operator), read it again and apply ``edit`` again."""
        for attempt in range(1, _UPDATE_TRIES + 1):
            current = await self._journal.get_schedule(name)
            try:
                return await self._save(edit(current), SaveMode.UPDATE, current.seq)
            except InvalidTransition:
                if attempt == _UPDATE_TRIES:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def set_paused(self, name: str, paused: bool) -> Schedule:
        return await self.change(name, lambda s: attrs.evolve(s, paused=paused))

    async def delete(self, name: str) -> Schedule:
        """The schedule as it was; raises ``ScheduleNotFound``."""
        deleted: Schedule = await self._write(DeleteSchedule(name, self._clock(), self._node))
        return deleted

    async def declare(self, schedule: Schedule) -> Schedule:
        """The App's schedule: created, or updated if its definition changed (an operator's
        pause stays); nothing is journaled when it is as declared."""
        return await self._save(schedule, SaveMode.DECLARE)

    async def _save(self, schedule: Schedule, mode: SaveMode, seq: int | None = None) -> Schedule:
        op = SaveSchedule(schedule, self._clock(), self._node, mode, seq)
        saved: Schedule = await self._write(op)
        return saved


async def write_on(journal: Journal, op: Op) -> Any:
    """One operation on ``journal`` in a transaction of its own (no node's writer)."""
    (outcome,) = await journal.run([op])
    return outcome.unwrap()
