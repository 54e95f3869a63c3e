"""The PostgreSQL ``Tx``: what ``BatchRun`` reads and writes inside one batch's transaction,
as SQL on one connection (see ``journal.postgres``). Reads lock the rows they return; writes
are set-based, one statement per flush whatever its size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from actorq.errors import StorageError
from actorq.journal.base import Selection
from actorq.journal.batch import ScheduleRow
from actorq.journal.rows import (
    EVENT_COLUMNS,
    SCHEDULE_COLUMNS,
    TASK_COLUMNS,
    event_to_row,
    queue_from_row,
    queue_to_row,
    schedule_from_row,
    schedule_to_row,
    table_queries,
    task_from_row,
    task_to_row,
    update_row,
)
from actorq.model import Event, Schedule, Task, TaskState
from actorq.queues import QueueSettings

COLUMNS = ", ".join(TASK_COLUMNS)  # a task row's, in the order task_from_row reads them
Q = table_queries("postgres")
_PREFETCH = 64  # at most this many journal numbers are taken ahead of need


def array(values: Sequence[str] | None) -> list[str] | None:
    """A filter as an array parameter: None (NULL) stands for any."""
    return None if values is None else list(values)


class PgTx:
    """The open write transaction of one batch (see ``batch.Tx``).

    Journal numbers are taken only after the rows they describe are locked: the batch that
    changed a task before us committed before we got its lock, so its numbers are smaller, and
    replaying by seq applies each task's events in the order they happened.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._spare: list[int] = []  # numbers taken since the last lock, not handed out yet
        self._ahead = 0  # how many to take at the next fetch, at least

    async def _tasks(self, name: str, *args: Any) -> list[Task]:
        rows = await self._conn.fetch(Q[name], *args)
        # Numbers taken before these locks may not be used for them; the batch is about to
        # want one per row it just locked (one event per claimed, reaped, appended task).
        self._spare, self._ahead = [], len(rows)
        return [task_from_row(r) for r in rows]

    async def load(self, task_ids: Sequence[str]) -> dict[str, Task]:
        return {t.id: t for t in await self._tasks("load", list(task_ids))}

    async def ready(
        self, limit: int, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> list[Task]:
        return await self._tasks(
            "ready",
            array(queues),
            array(types),
            limit,
        )

    async def claim_ready(
        self, limit: int, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> list[Task] | None:
        rows = await self._conn.fetch(
            Q["claim_ready"],
            array(queues),
            array(types),
            limit,
        )
        if rows[0][0]:
            return None
        taken = [r for r in rows if r[1] is not None]
        # Each row came with its journal number, drawn after its lock: the claim's events
        # take them, and no round trip of their own (the next fetch as after ``_tasks``).
        self._spare, self._ahead = sorted(r[1] for r in taken), len(taken)
        return [task_from_row(r[2:]) for r in taken]

    async def due(self, at: float, limit: int) -> list[Task]:
        return await self._tasks("due", at, limit)

    async def expired(self, at: float, limit: int) -> list[Task]:
        return await self._tasks("expired", at, limit)

    async def live_key_owner(self, key: str) -> str | None:
        owner: str | None = await self._conn.fetchval(Q["live_key_owner"], key)
        return owner

    async def extend(self, task_ids: Sequence[str], until: float) -> int:
        status: str = await self._conn.execute(Q["extend"], until, list(task_ids))
        return int(status.rsplit(" ", 1)[1])

    async def dead(self, selection: Selection, after: str | None, limit: int) -> list[Task]:
        if selection.ids is not None:
            return await self._tasks(
                "dead_ids", list(selection.ids), selection.queue, selection.type
            )
        return await self._tasks("dead", selection.queue, selection.type, after, limit)

    async def finished(
        self, cutoff: float, limit: int, only: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[Task]:
        return await self._tasks("finished", cutoff, array(only), list(exclude), limit)

    async def remove(self, task_ids: Sequence[str], seq: int) -> None:
        await self._conn.execute(Q["remove"], list(task_ids), seq)

    async def allocate(self, n: int) -> list[int]:
        if len(self._spare) < n:
            # BatchRun asks once per operation: taking numbers ahead (one per locked row, or
            # twice the last fetch) serves a batch of appends or submits in a few round trips.
            size = max(n - len(self._spare), self._ahead)
            fresh = await self._conn.fetch(Q["allocate"], size)
            self._spare += sorted(r[0] for r in fresh)
            self._ahead = min(size * 2, _PREFETCH)
        taken, self._spare = self._spare[:n], self._spare[n:]
        return taken

    # -- queues --------------------------------------------------------------------------

    async def ready_except(
        self,
        limit: int,
        queues: Sequence[str] | None,
        types: Sequence[str] | None,
        blocked: Sequence[str],
    ) -> list[Task]:
        return await self._tasks(
            "ready_except",
            array(queues),
            array(types),
            list(blocked),
            limit,
        )

    async def _locked_queues(self, name: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._conn.fetch(Q[name], *args)
        self._spare, self._ahead = [], 1  # numbers are taken after the locks they follow
        return rows

    async def queue_limits(
        self, queues: Sequence[str] | None
    ) -> list[tuple[QueueSettings, float | None, float | None]]:
        rows = await self._locked_queues("queue_limits", array(queues))
        return [(queue_from_row(r), r[-2], r[-1]) for r in rows]

    async def held_counts(self, queues: Sequence[str]) -> dict[str, int]:
        return {q: int(n) for q, n in await self._conn.fetch(Q["held_counts"], list(queues))}

    async def depth_counts(self, queues: Sequence[str]) -> dict[str, int]:
        return {q: int(n) for q, n in await self._conn.fetch(Q["depth_counts"], list(queues))}

    async def spend(self, queue: str, tokens: float, at: float) -> None:
        await self._conn.execute(Q["spend"], tokens, at, queue)

    async def queue_rows(self, names: Sequence[str]) -> dict[str, QueueSettings]:
        rows = await self._locked_queues("queue_rows", list(names))
        return {q.name: q for q in map(queue_from_row, rows)}

    async def depth_limits(self) -> dict[str, int]:
        return {name: int(n) for name, n in await self._conn.fetch(Q["depth_limits"])}

    async def save_queue(self, settings: QueueSettings, refill: bool) -> None:
        await self._conn.execute(Q["save_queue"], *queue_to_row(settings), None, None, refill)

    async def in_states(self, queue: str, states: Sequence[TaskState], limit: int) -> list[Task]:
        return await self._tasks("in_states", queue, [s.value for s in states], limit)

    async def write(self, events: Sequence[Event], tasks: Sequence[Task], new: set[str]) -> None:
        inserts = [task_to_row(t) for t in tasks if t.id in new]
        updates = [update_row(t) for t in tasks if t.id not in new]
        await self._conn.execute(Q["write"], [event_to_row(e) for e in events], inserts, updates)

    async def load_schedule(self, name: str) -> Schedule | None:
        row = await self._conn.fetchrow(Q["load_schedule"], name)
        self._spare, self._ahead = [], 1  # see _tasks: numbers are taken after the lock
        return None if row is None else schedule_from_row(row)

    async def due_schedules(self, at: float, limit: int) -> list[Schedule]:
        rows = await self._conn.fetch(Q["due_schedules"], at, limit)
        self._spare, self._ahead = [], 2 * len(rows)  # a task and an event each
        return [schedule_from_row(r) for r in rows]

    async def write_schedules(self, events: Sequence[Event], rows: Sequence[ScheduleRow]) -> None:
        inserts, updates, deletes = _split_schedules(rows)
        *columns, actors = _arrays([event_to_row(e) for e in events], len(EVENT_COLUMNS))
        done = await self._conn.fetchval(
            Q["write_schedules"],
            *columns,
            *_arrays(inserts, len(SCHEDULE_COLUMNS)),
            *_arrays(updates, len(SCHEDULE_COLUMNS) + 1),
            *_arrays(deletes, 2),
            actors,  # the last parameter, as in write
        )
        if done != len(updates) + len(deletes):  # the rows were locked: a bug, not a race
            raise StorageError("a schedule changed under a write that held its lock")
        if deletes:  # no row keeps a deletion's seq: the head's floor does (deletions are rare)
            await self._conn.execute(Q["raise_floor"], max(e.seq for e in events))


def _split_schedules(rows: Sequence[ScheduleRow]) -> tuple[list[Any], ...]:
    """The new, changed (with the seq each was read with) and deleted rows of a flush."""
    inserts, updates, deletes = [], [], []
    for name, before_seq, schedule in rows:
        if before_seq is None:
            if schedule is not None:
                inserts.append(schedule_to_row(schedule))
        elif schedule is None:
            deletes.append((name, before_seq))
        else:
            updates.append((*schedule_to_row(schedule), before_seq))
    return inserts, updates, deletes


def _arrays(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as one list per column, the shape ``unnest`` takes."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
