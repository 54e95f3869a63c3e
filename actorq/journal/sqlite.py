"""The journal on one SQLite file (WAL mode): the zero-configuration, one-machine backend.

One connection writes, one reads: WAL lets readers (the API) run beside the writer. Every
batch is one ``BEGIN IMMEDIATE`` transaction, committed with ``synchronous=FULL``, so an
acknowledged operation survives a crash or a power cut; the cost of the fsync is shared by
everything in the batch. What a batch reads and writes inside its transaction is
``sqlite_tx.SqliteTx``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite

import actorq.lifecycle as lifecycle
from actorq.auth import Token, stamped
from actorq.errors import (
    ActorqError,
    DuplicateToken,
    InvalidInput,
    ScheduleNotFound,
    StorageError,
    StorageUnavailable,
    TokenNotFound,
)
from actorq.journal.base import Head, Notice, Op, Outcome, needs_flush
from actorq.journal.batch import BatchRun, refold
from actorq.journal.rows import (
    EVENT_COLUMNS,
    REFOLD_BELOW,
    decode_cursor,
    encode_cursor,
    event_from_row,
    events_in_pages,
    gone_error,
    migrations,
    node_from_row,
    node_to_row,
    queries,
    queue_from_row,
    schedule_from_row,
    task_from_row,
    tasks_in_pages,
    token_from_row,
    token_to_row,
)
from actorq.journal.seals import (
    SEAL_COLUMNS,
    MakeSeal,
    Seal,
    SealMark,
    read_head,
    read_rows,
    read_seals,
    seal_from_row,
    seal_to_row,
)
from actorq.journal.shared_commits import SharedCommits
from actorq.journal.sqlite_tx import COLUMNS, Q, SqliteTx, drive, json_list
from actorq.journal.sqlite_watch import Bell, ForeignCommits
from actorq.journal.writer_thread import WriterThread
from actorq.model import Event, Page, Schedule, Task, TaskFilter, TaskState
from actorq.nodes import Node, Orders
from actorq.queues import QueueActivity, QueueSettings

log = logging.getLogger("actorq.journal.sqlite")

T = TypeVar("T")
_S = {
    name: sql.format(seal_columns=", ".join(SEAL_COLUMNS), event_columns=", ".join(EVENT_COLUMNS))
    for name, sql in queries("sqlite", "seals").items()
}
_SEQ_AT = EVENT_COLUMNS.index("seq")


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:``."""
    if not url.startswith("sqlite://"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    rest = url.removeprefix("sqlite://")
    return rest.removeprefix("/") if rest.startswith("/") else rest


# What the driver raises for a bug of ours or a constraint a request broke: not worth retrying.
_REFUSED = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.NotSupportedError,
)


def _translate(exc: Exception) -> ActorqError:
    """The domain error a driver error means. The driver's words go to the log only: an
    error may reach an HTTP client, and they can quote the data or the schema."""
    log.warning("sqlite: %r", exc)
    if isinstance(exc, OverflowError):  # an integer beyond 64 bits, refused while binding
        return InvalidInput("a value is out of range for the database")
    if isinstance(exc, ValueError | TypeError | sqlite3.DataError):  # lone surrogates, ...
        return InvalidInput("a value cannot be stored by the database")
    if isinstance(exc, _REFUSED):
        return StorageError("the database refused the operation")
    # OperationalError (locked past the busy timeout, read-only, disk full, I/O), corruption
    return StorageUnavailable("the database cannot be used right now")


async def _guard(call: Awaitable[T]) -> T:
    try:
        return await call
    except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:
        raise _translate(exc) from exc


class SqliteJournal:
    """``Journal`` on a SQLite file.

    Writes run on one dedicated thread with its own connection: a whole batch (BEGIN, every
    statement, COMMIT) is one hop to that thread, instead of one hop per statement; concurrent
    ``run`` calls share one transaction (``shared_commits``). Reads go through aiosqlite on a
    second connection, which WAL lets run beside the writer.
    """

    def __init__(self, path: str, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        # ":memory:" would give the writer and the reader a database each: one named database
        # of the memdb VFS is shared by both connections of this journal, and by no one else.
        self._target, self._uri = (
            (f"file:/actorq-mem-{uuid.uuid4().hex}?vfs=memdb", True)
            if path == ":memory:"
            else (path, False)
        )
        self._busy_ms = int(busy_timeout * 1000)
        self._writer: sqlite3.Connection | None = None
        self._thread: WriterThread | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._durable = True  # the writer connection's synchronous mode: FULL or NORMAL
        self._watch: ForeignCommits | None = None
        # Rung after each durable commit, for other processes' watchers (not in memory).
        self._bell: Bell | None = None if self._uri else Bell(path)
        self._shared = SharedCommits(self._run_now)  # concurrent callers share a commit

    def _pragmas(self) -> list[str]:
        """Each connection's settings; the writer first switches the file to WAL."""
        return [
            "PRAGMA synchronous = FULL",  # fsync at every commit: acknowledged means durable
            f"PRAGMA busy_timeout = {self._busy_ms}",
            "PRAGMA cache_size = -65536",
            "PRAGMA temp_store = MEMORY",
        ]

    def _open_writer(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self._target, uri=self._uri, isolation_level=None, check_same_thread=False
        )
        self._switch_to_wal(db)
        for pragma in self._pragmas():
            db.execute(pragma)
        return db

    def _switch_to_wal(self, db: sqlite3.Connection) -> None:
        """The journal mode, asked again while another process holds the new file's lock:
        SQLite refuses a change of journal mode at once then, without waiting as the busy
        timeout waits for other locks (two processes starting together on one new file)."""
        deadline = time.monotonic() + self._busy_ms / 1000
        while True:
            try:
                db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(0.01)

    async def open(self) -> None:
        try:
            self._thread = WriterThread("actorq-sqlite-writer")
            self._writer = await self._on_writer(self._open_writer)
            upgraded_from = await self._on_writer(self._migrate)
            self._reader = await _daemonic(
                aiosqlite.connect(self._target, uri=self._uri, isolation_level=None)
            )
            for pragma in [*self._pragmas(), "PRAGMA query_only = ON"]:
                await self._reader.execute(pragma)
        except sqlite3.Error as exc:
            await self.close()
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        await self._catch_up()
        if 0 < upgraded_from < REFOLD_BELOW:
            await self._refold_all()

    async def _refold_all(self) -> None:
        """Fold the whole journal into the projection again (after an upgrade that changed
        how events fold)."""
        tasks = lifecycle.fold([e async for e in self.events()])
        head = await self.head()
        await self.replace_projection(list(tasks.values()), head.journal_seq)

    async def subscribe(self, on_notice: Callable[[Notice], None]) -> None:
        """Tell ``on_notice`` when another process commits to this file (see
        ``sqlite_watch``): a web app enqueuing beside a worker reaches it in milliseconds,
        not at the next fallback poll. An in-memory database has no one else to hear."""
        if self._uri or self._watch is not None:
            return
        watch = ForeignCommits(self.path, self._w, self._on_writer,
                               lambda: on_notice(Notice("ready")), self._bell)  # fmt: skip
        if await watch.start():
            self._watch = watch

    async def close(self) -> None:
        await self._shared.wait_closed()
        if self._watch is not None:
            await self._watch.stop()
            self._watch = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._writer is not None:
            await self._on_writer(self._writer.close)
            self._writer = None
        if self._bell is not None:
            self._bell.close()
        if self._thread is not None:
            self._thread.close()
            self._thread = None

    async def _on_writer(self, fn: Callable[[], T]) -> T:
        if self._thread is None:
            raise StorageUnavailable("the journal is not open")
        return await self._thread.call(fn)

    @property
    def _w(self) -> sqlite3.Connection:
        if self._writer is None:
            raise StorageUnavailable("the journal is not open")
        return self._writer

    @property
    def _r(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise StorageUnavailable("the journal is not open")
        return self._reader

    def _migrate(self) -> int:
        """Apply the migrations the database lacks; the version it had (0: a new one)."""

        def body(db: sqlite3.Connection) -> int:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            for number, sql in migrations("sqlite"):
                if number > current:
                    for statement in _statements(sql):
                        db.execute(statement)
                    db.execute("INSERT INTO schema_version VALUES (?)", (number,))
            return current

        return self._in_transaction(body)

    def _in_transaction(self, body: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """On the writer thread: run ``body`` in one IMMEDIATE transaction."""
        db = self._w
        if durable != self._durable:
            db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        db.execute("BEGIN IMMEDIATE")
        watch = self._watch
        if watch is not None:
            watch.began()  # another process's commits, seen as this one begins
        try:
            result = body(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            if watch is not None:
                watch.ended()
        if durable and self._bell is not None:
            self._bell.ring()
        return result

    async def _transaction(self, body: Callable[[SqliteTx], T], durable: bool = True) -> T:
        async with self._write_lock:
            return await _guard(self._on_writer(lambda: self._in_transaction(
                lambda db: body(SqliteTx(db)), durable)))  # fmt: skip

    async def run(self, ops: Sequence[Op]) -> list[Outcome]:
        ops = [stamped(op) for op in ops]  # here, in the caller's context (see auth.ACTOR)
        return await self._shared.run(ops)

    async def _run_now(self, ops: list[Op]) -> list[Outcome]:
        return await self._transaction(lambda tx: drive(BatchRun(tx).run(ops)), needs_flush(ops))

    async def run_in(self, connection: Any, ops: Sequence[Op]) -> list[Outcome]:
        raise InvalidInput(
            "enqueue in the caller's transaction needs PostgreSQL: a SQLite journal is "
            "written by its node alone"
        )

    async def _catch_up(self) -> None:
        """Apply journal events the projection has not seen (a projection left behind)."""
        head = await self.head()
        if head.journal_seq <= head.projection_seq:
            return
        events = [e async for e in self.events(head.projection_seq)]

        def body(tx: SqliteTx) -> None:
            drive(refold(tx, events))
            tx.set_watermark(head.journal_seq)

        await self._transaction(body)

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        # One hop to the reader's thread runs the statement to its end. Run as execute, then
        # fetchall, a statement of one caller stays open while another's runs, and SQLite keeps
        # the connection's read snapshot while any statement is open: under concurrent reads
        # the reader could go on seeing the past (a task "running" long after it succeeded).
        return list(await _guard(self._r.execute_fetchall(sql, args)))

    async def _fetch_tasks(self, sql: str, *args: Any) -> list[Task]:
        return [task_from_row(r) for r in await self._rows(sql, *args)]

    async def _scalar(self, sql: str, *args: Any) -> Any:
        rows = await self._rows(sql, *args)
        return rows[0][0] if rows else None

    async def peek_ready(
        self, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> Task | None:
        found = await self._fetch_tasks(Q["ready"], json_list(queues), json_list(types), 1)
        return found[0] if found else None

    async def get(self, task_id: str) -> Task:
        found = await self._fetch_tasks(Q["get"], task_id)
        if not found:
            raise gone_error(task_id, await self._scalar(Q["last_kind"], task_id))
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
        if query.by is not None:  # the partial index journal_submitted_by finds them
            where.append("id IN (SELECT task_id FROM journal WHERE kind = 'submitted' "
                         "AND actor = ?)")  # fmt: skip
            args.append(query.by)
        if cursor is not None:
            where.append("id < ?")
            args.append(decode_cursor(cursor))
        sql = f"SELECT {COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        tasks = await self._fetch_tasks(sql, *args, limit + 1)
        more = len(tasks) > limit
        tasks = tasks[:limit]
        return Page(tasks, encode_cursor(tasks[-1]) if more else None)

    async def history(self, task_id: str) -> list[Event]:
        rows = await self._rows(Q["history"], task_id)
        if not rows:
            await self.get(task_id)  # raises TaskNotFound for an unknown id
        return [event_from_row(r) for r in rows]

    async def counts(self) -> dict[tuple[str, TaskState], int]:
        return {(q, TaskState(s)): n for q, s, n in await self._rows(Q["counts"])}

    async def next_due(self) -> float | None:
        value = await self._scalar(Q["next_due"])
        return None if value is None else float(value)

    async def next_lease_expiry(self) -> float | None:
        value = await self._scalar(Q["next_lease_expiry"])
        return None if value is None else float(value)

    async def running_on(self, node: str) -> list[Task]:
        pattern = node.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
        return await self._fetch_tasks(Q["running_on"], pattern)

    async def head(self) -> Head:
        journal = await self._scalar(Q["journal_head"])
        projection = await self._scalar(Q["watermark"])
        return Head(int(journal or 0), int(projection or 0))

    def events(self, after_seq: int = 0, until: float | None = None) -> AsyncIterator[Event]:
        async def page(after: int, limit: int) -> list[Any]:
            return await self._rows(Q["events"], after, limit)

        return events_in_pages(page, after_seq, until)

    async def get_many(self, task_ids: Sequence[str]) -> dict[str, Task]:
        """The tasks among ``task_ids`` that exist, by id."""
        found = await self._fetch_tasks(Q["load"], json.dumps(list(task_ids)))
        return {t.id: t for t in found}

    def tasks(self) -> AsyncIterator[Task]:
        async def page(after: str, limit: int) -> list[Task]:
            return await self._fetch_tasks(Q["all_tasks"], after, limit)

        return tasks_in_pages(page)

    async def replace_projection(
        self,
        tasks: Sequence[Task],
        seq: int,
        queues: Sequence[QueueSettings] | None = None,
        schedules: Sequence[Schedule] | None = None,
    ) -> None:
        def body(tx: SqliteTx) -> None:
            tx.clear()
            tx.write_now([], tasks, {t.id for t in tasks})
            tx.set_watermark(seq)
            if queues is not None:
                tx.replace_queues(queues)
            if schedules is not None:
                tx.replace_schedules(schedules)

        await self._transaction(body)

    # -- schedules -----------------------------------------------------------------------

    async def schedules(self) -> list[Schedule]:
        return [schedule_from_row(r) for r in await self._rows(Q["all_schedules"])]

    async def get_schedule(self, name: str) -> Schedule:
        rows = await self._rows(Q["get_schedule"], name)
        if not rows:
            raise ScheduleNotFound(name)
        return schedule_from_row(rows[0])

    async def next_schedule_due(self) -> float | None:
        value = await self._scalar(Q["next_schedule_due"])
        return None if value is None else float(value)

    async def replace_schedules(self, schedules: Sequence[Schedule]) -> None:
        await self._transaction(lambda tx: tx.replace_schedules(schedules))

    # -- nodes ---------------------------------------------------------------------------

    async def _write_soft(self, name: str, *args: Any) -> list[Any]:
        """One statement of soft state (node records) in a transaction of its own; the rows
        it returns. Not flushed: lost in a crash, it is written again at the next heartbeat."""

        def body(db: sqlite3.Connection) -> list[Any]:
            return db.execute(Q[name], args).fetchall()

        async with self._write_lock:
            return await _guard(self._on_writer(lambda: self._in_transaction(body, durable=False)))

    async def register_node(self, node: Node, *, start: bool = False) -> Orders:
        rows = await self._write_soft("register_node", *node_to_row(node), start)
        return Orders(bool(rows[0][0]), bool(rows[0][1])) if rows else Orders()

    async def remove_node(self, node: str) -> None:
        await self._write_soft("remove_node", node)

    async def leave_node(self, node: str, at: float) -> None:
        await self._write_soft("leave_node", node, at)

    async def forget_nodes(self, before: float) -> None:
        await self._write_soft("forget_nodes", before)

    async def command_node(self, node: str, paused: bool | None, drain: bool) -> None:
        # Other processes on this file hear of it at their heartbeat.
        await self._write_soft("command_node", node, paused, drain)

    async def _nodes(self, name: str, arg: Any) -> list[Node]:
        async def read() -> list[Node]:
            async with self._r.execute(Q[name], (arg,)) as cur:
                return [node_from_row(r) for r in await cur.fetchall()]

        return await _guard(read())

    async def live_nodes(self, since: float) -> list[Node]:
        return await self._nodes("live_nodes", since)

    async def list_nodes(self, since: float) -> list[Node]:
        return await self._nodes("list_nodes", since)

    async def get_node(self, node: str) -> Node | None:
        found = await self._nodes("get_node", node)
        return found[0] if found else None

    async def queued_by_type(self) -> dict[tuple[str, str], int]:
        async def read() -> dict[tuple[str, str], int]:
            async with self._r.execute(Q["queued_by_type"]) as cur:
                return {(q, t): n for q, t, n in await cur.fetchall()}

        return await _guard(read())

    # -- queues ----------------------------------------------------------------------------

    async def queue_settings(self) -> list[QueueSettings]:
        return [queue_from_row(r) for r in await self._rows(Q["all_queues"])]

    async def queue_activity(self, since: float) -> QueueActivity:
        oldest = {q: float(at) for q, at in await self._rows(Q["oldest_queued"])}
        finished = {q: int(n) for q, n in await self._rows(Q["finished_since"], since)}
        return QueueActivity(oldest, finished)

    async def replace_queues(self, queues: Sequence[QueueSettings]) -> None:
        await self._transaction(lambda tx: tx.replace_queues(queues))

    # -- tokens ----------------------------------------------------------------------------

    async def _write_one(self, name: str, *args: Any) -> list[Any]:
        """One durable statement in a transaction of its own; the rows it returns."""

        def body(db: sqlite3.Connection) -> list[Any]:
            return db.execute(Q[name], args).fetchall()

        async with self._write_lock:
            return await _guard(self._on_writer(lambda: self._in_transaction(body)))

    async def create_token(self, token: Token) -> None:
        if not await self._write_one("create_token", *token_to_row(token)):
            raise DuplicateToken(token.name)

    async def tokens(self) -> list[Token]:
        return [token_from_row(r) for r in await self._rows(Q["all_tokens"])]

    async def revoke_token(self, name: str, at: float) -> Token:
        rows = await self._write_one("revoke_token", name, at)
        if not rows:
            raise TokenNotFound(name)
        return token_from_row(rows[0])

    # -- seals and archives ----------------------------------------------------------------

    async def seal_mark(self) -> SealMark:
        return SealMark(int(await self._scalar(_S["journal_top"]) or 0))

    async def mark_final(self, mark: SealMark) -> bool:
        # Seqs are taken under the write lock, max + 1: a committed seq is never joined by a
        # lower one, whichever process writes next.
        return True

    async def write_seal(self, upto: int, limit: int, make: MakeSeal) -> Seal | None:
        # In a write transaction: the lock orders sealers (and writers) of every process.
        def body(db: sqlite3.Connection) -> Seal | None:
            found = db.execute(_S["seal_head"]).fetchone()
            head = None if found is None else seal_from_row(found)
            after = 0 if head is None else head.last_seq
            rows = db.execute(_S["rows_after"], (after, upto, limit)).fetchall()
            if not rows:
                return None
            seal = make(head, rows, upto if len(rows) < limit else int(rows[-1][_SEQ_AT]))
            db.execute(_S["insert_seal"], seal_to_row(seal))
            return seal

        async with self._write_lock:
            return await _guard(self._on_writer(lambda: self._in_transaction(body)))

    async def seal_head(self) -> Seal | None:
        return await read_head(self._rows, _S)

    def seal_list(self, after_last_seq: int = 0) -> AsyncIterator[Seal]:
        return read_seals(self._rows, _S, after_last_seq)

    def journal_rows(self, after_seq: int = 0, upto: int | None = None) -> AsyncIterator[Any]:
        return read_rows(self._rows, _S, after_seq, upto)

    async def archived_through(self) -> int:
        return int(await self._scalar(_S["archived_through"]) or 0)

    async def record_verification(self, at: float, ok: bool, head: int, report: str) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute(_S["record_verification"], (at, ok, head, report))

        async with self._write_lock:
            await _guard(self._on_writer(lambda: self._in_transaction(body)))

    async def last_verification(self) -> tuple[float, bool, int, str] | None:
        rows = await self._rows(_S["last_verification"])
        return None if not rows else (float(rows[0][0]), bool(rows[0][1]), int(rows[0][2]),
                                      str(rows[0][3]))  # fmt: skip

    async def remove_archived(self, seals: Sequence[Seal], segment: str, at: float) -> int:
        def body(db: sqlite3.Connection) -> int:
            removed = 0
            for seal in seals:
                db.execute(_S["record_archived"], (seal.last_seq, seal.first_seq, segment, at))
                removed += db.execute(_S["delete_archived"],
                                      (seal.first_seq, seal.last_seq)).rowcount  # fmt: skip
            return removed

        async with self._write_lock:
            return await _guard(self._on_writer(lambda: self._in_transaction(body)))


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


def _daemonic(pending: aiosqlite.Connection) -> aiosqlite.Connection:
    """The reading connection, its thread a daemon. Since aiosqlite 0.22 that thread keeps a
    process alive until the connection is closed: a program that enqueues and forgets to stop
    its App would never exit. This connection only reads (``query_only``), and the writer's
    thread is a daemon too, so nothing is lost at exit that a commit had not made durable."""
    thread = getattr(pending, "_thread", None)  # not started until the connection is awaited
    if isinstance(thread, threading.Thread) and not thread.is_alive():
        thread.daemon = True
    return pending
