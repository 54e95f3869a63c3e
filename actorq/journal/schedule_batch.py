"""The schedule operations of a batch: save, delete and fire, inside the batch's transaction.

A firing is where "one task per tick across the cluster" is decided. The due rows are read
locked (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite has one writer), and each row's task,
its ``schedule_fired`` event and its next tick are written in this one transaction, the row's
write guarded on the seq it was read with. A node that reads the row after the commit finds it
no longer due; one that reads it meanwhile passes over it. Clocks play no part: the row says
which tick is next, and only one transaction can move it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

import actorq.lifecycle as lifecycle
import actorq.recurrence as recurrence
from actorq.errors import DuplicateSchedule, InvalidTransition, ScheduleNotFound
from actorq.journal.base import (
    Change,
    DeleteSchedule,
    FireSchedules,
    Outcome,
    SaveMode,
    SaveSchedule,
)
from actorq.model import Schedule, new_id

if TYPE_CHECKING:
    from actorq.journal.batch import BatchRun


class ScheduleRun:
    def __init__(self, batch: BatchRun) -> None:
        self._batch = batch

    async def run(self, op: SaveSchedule | DeleteSchedule | FireSchedules) -> Outcome:
        match op:
            case SaveSchedule():
                return Outcome(await self._save(op))
            case DeleteSchedule():
                return Outcome(await self._delete(op))
            case FireSchedules():
                return await self._fire(op)

    async def _save(self, op: SaveSchedule) -> Schedule:
        wanted = op.schedule
        before = await self._batch.schedule(wanted.name)
        match op.mode:
            case SaveMode.CREATE if before is not None:
                raise DuplicateSchedule(wanted.name)
            case SaveMode.UPDATE if before is None:
                raise ScheduleNotFound(wanted.name)
            case SaveMode.UPDATE if before is not None and before.seq != op.expect_seq:
                raise InvalidTransition(f"schedule {wanted.name!r} changed meanwhile; try again")
            case SaveMode.DECLARE if before is not None:
                wanted = attrs.evolve(wanted, paused=before.paused)
                if recurrence.definition(before) == recurrence.definition(wanted):
                    return before  # as declared already: nothing to journal
        planned = recurrence.plan_save(before, wanted, op.at)
        event = recurrence.saved_event(planned, at=op.at, node=op.node)
        saved = await self._batch.stage_schedule(before, event)
        assert saved is not None  # a saved event always leaves a schedule
        return saved

    async def _delete(self, op: DeleteSchedule) -> Schedule:
        before = await self._batch.schedule(op.name)
        if before is None:
            raise ScheduleNotFound(op.name)
        event = recurrence.deleted_event(before, at=op.at, node=op.node)
        await self._batch.stage_schedule(before, event)
        return before

    async def _fire(self, op: FireSchedules) -> Outcome:
        await self._batch.flush()  # the due rows are read from the table
        fired: list[Schedule] = []
        changes: list[Change] = []
        for row in await self._batch.due_schedules(op.at, op.limit):
            firing = recurrence.plan_firing(row, op.at)
            task_id = None
            if firing.tick is not None:
                task_id = new_id()
                new = recurrence.task_of(row, firing, task_id)
                submitted = lifecycle.submitted_event(new, at=op.at, node=op.node)
                changes += (await self._batch.stage([(None, submitted)])).changes
            event = recurrence.firing_event(row, firing, task_id, at=op.at, node=op.node)
            after = await self._batch.stage_schedule(row, event)
            assert after is not None  # a firing never deletes
            fired.append(after)
        return Outcome(fired, changes=changes)
