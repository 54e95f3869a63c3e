"""The SQLite ``Tx``: what ``BatchRun`` reads and writes inside one batch's transaction, as
SQL on the writer connection (see ``journal.sqlite``), and ``drive``, which runs a batch on
the writer thread without an event loop."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar, cast

from actorq.errors import StorageError
from actorq.journal.base import Selection
from actorq.journal.batch import ScheduleRow
from actorq.journal.rows import (
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

T = TypeVar("T")
COLUMNS = ", ".join(TASK_COLUMNS)  # a task row's, in the order task_from_row reads them
Q = table_queries("sqlite")


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (all its awaits are on ``SqliteTx``) to completion."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast("T", done.value)
    coro.close()
    raise RuntimeError("a journal batch tried to suspend inside the writer thread")


class SqliteTx:
    """The open write transaction of one batch (see ``batch.Tx``).

    Its methods are coroutines only to share ``BatchRun`` with the PostgreSQL journal: they
    run synchronously on the writer thread, so a whole batch costs one thread hop.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._next_seq: int | None = None

    async def _tasks(self, sql: str, *args: Any) -> list[Task]:
        return [task_from_row(r) for r in self._db.execute(sql, args).fetchall()]

    async def load(self, task_ids: Sequence[str]) -> dict[str, Task]:
        found = await self._tasks(Q["load"], json.dumps(list(task_ids)))
        return {t.id: t for t in found}

    async def ready(
        self, limit: int, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> list[Task]:
        return await self._tasks(Q["ready"], json_list(queues), json_list(types), limit)

    async def claim_ready(
        self, limit: int, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> list[Task] | None:
        if await self.queue_limits(queues):
            return None
        return await self.ready(limit, queues, types)

    async def due(self, at: float, limit: int) -> list[Task]:
        return await self._tasks(Q["due"], at, limit)

    async def expired(self, at: float, limit: int) -> list[Task]:
        return await self._tasks(Q["expired"], at, limit)

    async def live_key_owner(self, key: str) -> str | None:
        row = self._db.execute(Q["live_key_owner"], (key,)).fetchone()
        return None if row is None else str(row[0])

    async def extend(self, task_ids: Sequence[str], until: float) -> int:
        return self._db.execute(Q["extend"], (until, json.dumps(list(task_ids)))).rowcount

    async def dead(self, selection: Selection, after: str | None, limit: int) -> list[Task]:
        if selection.ids is not None:
            ids = json.dumps(list(selection.ids))
            return await self._tasks(Q["dead_ids"], ids, selection.queue, selection.type)
        return await self._tasks(Q["dead"], selection.queue, selection.type, after, limit)

    async def finished(
        self, cutoff: float, limit: int, only: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[Task]:
        return await self._tasks(
            Q["finished"], cutoff, json_list(only), json.dumps(list(exclude)), limit
        )

    async def remove(self, task_ids: Sequence[str], seq: int) -> None:
        # The watermark is a row of its own here, set with the events: nothing more to keep.
        self._db.execute(Q["remove_tasks"], (json.dumps(list(task_ids)),))

    async def allocate(self, n: int) -> list[int]:
        if self._next_seq is None:  # we hold the write lock: nobody else can append meanwhile
            row = self._db.execute(Q["journal_head"]).fetchone()
            self._next_seq = int(row[0]) + 1 if row else 1
        first, self._next_seq = self._next_seq, self._next_seq + n
        return list(range(first, first + n))

    async def write(self, events: Sequence[Event], tasks: Sequence[Task], new: set[str]) -> None:
        self.write_now(events, tasks, new)

    # -- queues (one writer: nothing to lock) --------------------------------------------

    async def ready_except(
        self,
        limit: int,
        queues: Sequence[str] | None,
        types: Sequence[str] | None,
        blocked: Sequence[str],
    ) -> list[Task]:
        return await self._tasks(
            Q["ready_except"], json_list(queues), json_list(types), json.dumps(list(blocked)),
            limit,
        )  # fmt: skip

    async def queue_limits(
        self, queues: Sequence[str] | None
    ) -> list[tuple[QueueSettings, float | None, float | None]]:
        rows = self._db.execute(Q["queue_limits"], (json_list(queues),)).fetchall()
        return [(queue_from_row(r), r[-2], r[-1]) for r in rows]

    async def held_counts(self, queues: Sequence[str]) -> dict[str, int]:
        rows = self._db.execute(Q["held_counts"], (json.dumps(list(queues)),)).fetchall()
        return {q: int(n) for q, n in rows}

    async def depth_counts(self, queues: Sequence[str]) -> dict[str, int]:
        rows = self._db.execute(Q["depth_counts"], (json.dumps(list(queues)),)).fetchall()
        return {q: int(n) for q, n in rows}

    async def spend(self, queue: str, tokens: float, at: float) -> None:
        self._db.execute(Q["spend"], (tokens, at, queue))

    async def queue_rows(self, names: Sequence[str]) -> dict[str, QueueSettings]:
        rows = self._db.execute(Q["queue_rows"], (json.dumps(list(names)),)).fetchall()
        return {q.name: q for q in map(queue_from_row, rows)}

    async def depth_limits(self) -> dict[str, int]:
        return {name: int(n) for name, n in self._db.execute(Q["depth_limits"]).fetchall()}

    async def save_queue(self, settings: QueueSettings, refill: bool) -> None:
        self._db.execute(Q["save_queue"], (*queue_to_row(settings), None, None, refill))

    async def in_states(self, queue: str, states: Sequence[TaskState], limit: int) -> list[Task]:
        return await self._tasks(
            Q["in_states"], queue, json.dumps([s.value for s in states]), limit
        )

    def replace_queues(self, queues: Sequence[QueueSettings]) -> None:
        self._db.execute(Q["clear_queues"])
        for settings in queues:
            self._db.execute(Q["save_queue"], (*queue_to_row(settings), None, None, True))

    def replace_schedules(self, schedules: Sequence[Schedule]) -> None:
        self.clear_schedules()
        self.write_schedules_now([], [(s.name, None, s) for s in schedules])

    def write_now(self, events: Sequence[Event], tasks: Sequence[Task], new: set[str]) -> None:
        if events:
            self._db.executemany(Q["insert_event"], [event_to_row(e) for e in events])
        # Updates first: a task that finished in this batch frees its idempotency key for a
        # task submitted after it in the same batch.
        updates = [update_row(t) for t in tasks if t.id not in new]
        if updates:
            self._db.executemany(Q["update_task"], updates)
        inserts = [task_to_row(t) for t in tasks if t.id in new]
        if inserts:
            self._db.executemany(Q["insert_task"], inserts)
        if events:
            self.set_watermark(max(e.seq for e in events))

    def set_watermark(self, seq: int) -> None:
        self._db.execute(Q["set_watermark"], (str(seq),))

    async def load_schedule(self, name: str) -> Schedule | None:
        row = self._db.execute(Q["load_schedule"], (name,)).fetchone()
        return None if row is None else schedule_from_row(row)

    async def due_schedules(self, at: float, limit: int) -> list[Schedule]:
        rows = self._db.execute(Q["due_schedules"], (at, limit)).fetchall()
        return [schedule_from_row(r) for r in rows]

    async def write_schedules(self, events: Sequence[Event], rows: Sequence[ScheduleRow]) -> None:
        self.write_schedules_now(events, rows)

    def write_schedules_now(self, events: Sequence[Event], rows: Sequence[ScheduleRow]) -> None:
        if events:
            self._db.executemany(Q["insert_event"], [event_to_row(e) for e in events])
        for name, before_seq, schedule in rows:
            if before_seq is None:
                if schedule is not None:
                    self._db.execute(Q["insert_schedule"], schedule_to_row(schedule))
                continue
            if schedule is None:
                done = self._db.execute(Q["delete_schedule"], (name, before_seq)).rowcount
            else:
                args = (*schedule_to_row(schedule), before_seq)
                done = self._db.execute(Q["update_schedule"], args).rowcount
            if done != 1:  # the write lock makes this impossible: a bug, not a race
                raise StorageError("a schedule changed under a write that held the lock")
        if events:
            top = max(e.seq for e in events)
            self._db.execute(Q["raise_watermark"], (top,))

    def clear(self) -> None:
        self._db.execute(Q["clear_tasks"])

    def clear_schedules(self) -> None:
        self._db.execute(Q["clear_schedules"])


def json_list(values: Sequence[str] | None) -> str | None:
    return None if values is None else json.dumps(list(values))
