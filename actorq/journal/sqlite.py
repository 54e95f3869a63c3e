"""The journal on one SQLite file (WAL mode): the zero-configuration, one-machine backend.

One connection writes, one reads: WAL lets readers (the API) run beside the writer. Every
batch is one ``BEGIN IMMEDIATE`` transaction, committed with ``synchronous=FULL``, so an
acknowledged operation survives a crash or a power cut; the cost of the fsync is shared by
everything in the batch.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite

from actorq import lifecycle
from actorq.errors import StorageError, TaskNotFound
from actorq.journal.base import Head, Op, Outcome
from actorq.journal.batch import BatchRun
from actorq.journal.rows import (
    TASK_COLUMNS,
    decode_cursor,
    encode_cursor,
    event_from_row,
    event_to_row,
    migrations,
    queries,
    task_from_row,
    task_to_row,
)
from actorq.model import Event, Page, Task, TaskFilter, TaskState

T = TypeVar("T")
_COLUMNS = ", ".join(TASK_COLUMNS)
_Q = {
    name: sql.format(columns=_COLUMNS, placeholders=", ".join("?" * len(TASK_COLUMNS)))
    for name, sql in queries("sqlite").items()
}
_CHUNK = 1000


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:``."""
    if not url.startswith("sqlite://"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    rest = url.removeprefix("sqlite://")
    return rest.removeprefix("/") if rest.startswith("/") else rest


async def _guard(call: Awaitable[T]) -> T:
    try:
        return await call
    except sqlite3.Error as exc:
        raise StorageError(f"sqlite: {exc}") from exc


class _Tx:
    """The open write transaction of one batch (see ``batch.Tx``)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._next_seq: int | None = None

    async def _tasks(self, sql: str, *args: Any) -> list[Task]:
        async with self._db.execute(sql, args) as cur:
            return [task_from_row(r) for r in await cur.fetchall()]

    async def load(self, task_ids: Sequence[str]) -> dict[str, Task]:
        found = await self._tasks(_Q["load"], json.dumps(list(task_ids)))
        return {t.id: t for t in found}

    async def ready(self, limit: int, queues: Sequence[str] | None) -> list[Task]:
        if queues is None:
            return await self._tasks(_Q["ready_any"], limit)
        return await self._tasks(_Q["ready_in"], json.dumps(list(queues)), limit)

    async def due(self, at: float, limit: int) -> list[Task]:
        return await self._tasks(_Q["due"], at, limit)

    async def expired(self, at: float, limit: int) -> list[Task]:
        return await self._tasks(_Q["expired"], at, limit)

    async def live_key_owner(self, key: str) -> str | None:
        async with self._db.execute(_Q["live_key_owner"], (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def extend(self, task_ids: Sequence[str], until: float) -> int:
        cur = await self._db.execute(_Q["extend"], (until, json.dumps(list(task_ids))))
        return cur.rowcount

    async def allocate(self, n: int) -> list[int]:
        if self._next_seq is None:  # we hold the write lock: nobody else can append meanwhile
            async with self._db.execute(_Q["journal_head"]) as cur:
                row = await cur.fetchone()
            self._next_seq = int(row[0]) + 1 if row else 1
        first, self._next_seq = self._next_seq, self._next_seq + n
        return list(range(first, first + n))

    async def write(self, events: Sequence[Event], tasks: Sequence[Task], new: set[str]) -> None:
        await self._db.executemany(_Q["insert_event"], [event_to_row(e) for e in events])
        inserts = [task_to_row(t) for t in tasks if t.id in new]
        if inserts:
            await self._db.executemany(_Q["insert_task"], inserts)
        updates = [_update_row(t) for t in tasks if t.id not in new]
        if updates:
            await self._db.executemany(_Q["update_task"], updates)
        if events:
            await self._db.execute(_Q["set_watermark"], (str(max(e.seq for e in events)),))


def _update_row(t: Task) -> tuple[Any, ...]:
    return (
        t.state.value, t.attempt, t.run_at, t.updated_at, t.seq, json.dumps(t.result),
        t.error, t.started_at, t.finished_at, t.worker, t.lease_expires_at, t.id,
    )  # fmt: skip


class SqliteJournal:
    """``Journal`` on a SQLite file."""

    def __init__(self, path: str, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        self._busy_ms = int(busy_timeout * 1000)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in (
            "journal_mode = WAL",
            "synchronous = FULL",  # fsync at every commit: acknowledged means durable
            f"busy_timeout = {self._busy_ms}",
            "cache_size = -65536",
            "temp_store = MEMORY",
        ):
            await db.execute(f"PRAGMA {pragma}")
        return db

    async def open(self) -> None:
        try:
            self._writer = await self._connect()
            await self._migrate(self._writer)
            self._reader = await self._connect()
            await self._reader.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            await self.close()
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        await self._catch_up()

    async def close(self) -> None:
        for db in (self._reader, self._writer):
            if db is not None:
                await db.close()
        self._reader = self._writer = None

    @property
    def _w(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise StorageError("the journal is not open")
        return self._writer

    @property
    def _r(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StorageError("the journal is not open")
        return self._reader

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            async with db.execute("SELECT max(version) FROM schema_version") as cur:
                row = await cur.fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            for number, sql in migrations("sqlite"):
                if number > current:
                    for statement in _statements(sql):
                        await db.execute(statement)
                    await db.execute("INSERT INTO schema_version VALUES (?)", (number,))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise

    async def _transaction(self, body: Callable[[_Tx], Awaitable[T]]) -> T:
        async with self._write_lock:
            db = self._w
            await _guard(db.execute("BEGIN IMMEDIATE"))
            try:
                result = await body(_Tx(db))
                await _guard(db.execute("COMMIT"))
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            return result

    async def run(self, ops: Sequence[Op]) -> list[Outcome]:
        return await _guard(self._transaction(lambda tx: BatchRun(tx).run(ops)))

    async def _catch_up(self) -> None:
        """Apply journal events the projection has not seen (a projection left behind)."""
        head = await self.head()
        if head.journal_seq <= head.projection_seq:
            return
        events = [e async for e in self.events(head.projection_seq)]

        async def body(tx: _Tx) -> None:
            before = await tx.load(list({e.task_id for e in events}))
            after = lifecycle.fold(events, dict(before))
            await tx.write([], list(after.values()), set(after) - set(before))
            await self._w.execute(_Q["set_watermark"], (str(head.journal_seq),))

        await self._transaction(body)

    async def _fetch_tasks(self, sql: str, *args: Any) -> list[Task]:
        async with self._r.execute(sql, args) as cur:
            return [task_from_row(r) for r in await cur.fetchall()]

    async def _scalar(self, sql: str, *args: Any) -> Any:
        async with self._r.execute(sql, args) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def get(self, task_id: str) -> Task:
        found = await _guard(self._fetch_tasks(_Q["get"], task_id))
        if not found:
            raise TaskNotFound(task_id)
        return found[0]

    async def list_tasks(self, query: TaskFilter, limit: int, cursor: str | None) -> Page:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("state", query.state), ("queue", query.queue)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(str(value))
        if query.type is not None:
            where.append("type = ?")
            args.append(query.type)
        if cursor is not None:
            created, task_id = decode_cursor(cursor)
            where.append("(created_at, id) < (?, ?)")
            args += [created, task_id]
        sql = f"SELECT {_COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        tasks = await _guard(self._fetch_tasks(sql, *args, limit + 1))
        more = len(tasks) > limit
        tasks = tasks[:limit]
        return Page(tasks, encode_cursor(tasks[-1]) if more else None)

    async def history(self, task_id: str) -> list[Event]:
        async with self._r.execute(_Q["history"], (task_id,)) as cur:
            rows = await cur.fetchall()
        if not rows:
            await self.get(task_id)  # raises TaskNotFound for an unknown id
        return [event_from_row(r) for r in rows]

    async def counts(self) -> dict[tuple[str, TaskState], int]:
        async with self._r.execute(_Q["counts"]) as cur:
            return {(q, TaskState(s)): n for q, s, n in await cur.fetchall()}

    async def next_due(self) -> float | None:
        value = await self._scalar(_Q["next_due"])
        return None if value is None else float(value)

    async def next_lease_expiry(self) -> float | None:
        value = await self._scalar(_Q["next_lease_expiry"])
        return None if value is None else float(value)

    async def running_on(self, node: str) -> list[Task]:
        pattern = node.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
        return await self._fetch_tasks(_Q["running_on"], pattern)

    async def head(self) -> Head:
        journal = await self._scalar(_Q["journal_head"])
        projection = await self._scalar(_Q["watermark"])
        return Head(int(journal or 0), int(projection or 0))

    async def events(self, after_seq: int = 0, until: float | None = None) -> AsyncIterator[Event]:
        while True:
            async with self._r.execute(_Q["events"], (after_seq, _CHUNK)) as cur:
                rows = list(await cur.fetchall())
            for row in rows:
                event = event_from_row(row)
                if until is not None and event.at > until:
                    return
                yield event
            if len(rows) < _CHUNK:
                return
            after_seq = int(rows[-1][0])

    async def tasks(self) -> AsyncIterator[Task]:
        last = ""
        while True:
            batch = await self._fetch_tasks(_Q["all_tasks"], last, _CHUNK)
            for task in batch:
                yield task
            if len(batch) < _CHUNK:
                return
            last = batch[-1].id

    async def replace_projection(self, tasks: Sequence[Task], seq: int) -> None:
        async def body(tx: _Tx) -> None:
            await self._w.execute(_Q["clear_tasks"])
            await tx.write([], tasks, {t.id for t in tasks})
            await self._w.execute(_Q["set_watermark"], (str(seq),))

        await _guard(self._transaction(body))


def _statements(script: str) -> list[str]:
    """Split a migration into statements (a trigger body's ``;`` stays inside its statement)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out

