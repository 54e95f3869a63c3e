"""The journal on PostgreSQL: the cluster backend, shared by every node through one database.

Each batch is one transaction on a pooled connection, run by the same ``BatchRun`` as SQLite
over a ``Tx`` (``pg_tx.PgTx``) whose reads lock rows: ``FOR UPDATE SKIP LOCKED`` where nodes
compete for work (claim, promote, reap), plain ``FOR UPDATE`` where a batch changes a task it
names. Writes are set-based (arrays through ``unnest``), so a flush costs one round trip
whatever its size.
Nodes wake each other with one ``NOTIFY`` per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import asyncpg

import actorq.lifecycle as lifecycle
from actorq.auth import Token, stamped
from actorq.errors import (
    ActorqError,
    DuplicateSchedule,
    DuplicateTask,
    DuplicateToken,
    InvalidInput,
    ScheduleNotFound,
    StorageError,
    StorageUnavailable,
    TokenNotFound,
)
from actorq.journal import pg_claim
from actorq.journal.base import Claim, Head, Notice, Op, Outcome, Since, needs_flush
from actorq.journal.batch import BatchRun, refold
from actorq.journal.pg_listen import Listener
from actorq.journal.pg_submit import (
    OwnConnection,
    Prepared,
    prepare,
    send,
    settle,
    submissions_only,
    written,
)
from actorq.journal.pg_tail import read_tail
from actorq.journal.pg_tx import COLUMNS, PgTx, Q, array
from actorq.journal.rows import (
    EVENT_COLUMNS,
    PAGE,
    REFOLD_BELOW,
    decode_cursor,
    dumps,
    encode_cursor,
    event_from_row,
    events_in_pages,
    gone_error,
    migrations,
    node_from_row,
    node_to_row,
    queries,
    queue_from_row,
    queue_to_row,
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
from actorq.model import (
    HELD_STATES,
    QUEUE_SUBJECT,
    Event,
    EventKind,
    Page,
    Schedule,
    Task,
    TaskFilter,
    TaskState,
)
from actorq.nodes import Node, Orders
from actorq.queues import QueueActivity, QueueSettings

log = logging.getLogger("actorq.journal.postgres")

_S = {
    name: sql.format(seal_columns=", ".join(SEAL_COLUMNS), event_columns=", ".join(EVENT_COLUMNS))
    for name, sql in queries("postgres", "seals").items()
}
_SEQ_AT = EVENT_COLUMNS.index("seq")
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,55}")  # leaves room in a 63-byte channel name
_RETRIES = 3  # a batch that lost a deadlock or a key race runs again from the start
_SCHEDULE_KEY = "schedules_pkey"
# Two nodes creating the same schedule at once both find no row to lock: the second insert
# fails on the key, and its batch runs again, finding the row this time.
_RACED_KEYS = frozenset({"tasks_live_key", _SCHEDULE_KEY})


def split_url(url: str) -> tuple[str, str | None]:
    """The DSN for asyncpg and the ``schema`` query parameter taken out of ``url``."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    kept = [(key, value) for key, value in query if key != "schema"]
    dsn = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
    if not schemas:
        return dsn, None
    if len(schemas) > 1 or not _SCHEMA.fullmatch(schemas[0]):
        raise ValueError(f"schema must be one plain identifier of at most 56 characters: {url!r}")
    return dsn, schemas[0]


# The server cannot serve us now (down, shutting down, out of resources, read-only, busy
# with locks or deadlocks): the same request may succeed later.
_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # admin shutdown, statement timeout, cannot connect now
    asyncpg.InsufficientResourcesError,  # disk full, too many connections
    asyncpg.PostgresSystemError,
    asyncpg.ReadOnlySQLTransactionError,  # a standby
    asyncpg.LockNotAvailableError,
    asyncpg.TransactionRollbackError,  # deadlock or serialization, still after the retries
)


def _is_bad_data(exc: Exception) -> bool:
    """Data the database cannot hold: SQLSTATE class 22 (a number out of range, a NUL or an
    untranslatable character in text, an invalid text representation), or a value asyncpg
    could not encode (its client-side DataError, an InterfaceError that is a ValueError)."""
    return isinstance(exc, asyncpg.DataError) or (
        isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)
    )


def _translate(exc: Exception) -> ActorqError:
    """The domain error a driver error means. The driver's words go to the log only: an
    error may reach an HTTP client, and they can quote the data or the schema."""
    if isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == "tasks_live_key":
        found = re.search(r"\)=\((.*)\) already exists", exc.detail or "")
        return DuplicateTask(found.group(1) if found else "?")
    if isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == _SCHEDULE_KEY:
        found = re.search(r"\)=\((.*)\) already exists", exc.detail or "")
        return DuplicateSchedule(found.group(1) if found else "?")
    log.warning("postgres: %r", exc)
    if _is_bad_data(exc):
        return InvalidInput("a value cannot be stored by the database (out of range, or a "
                            "character it does not accept)")  # fmt: skip
    if isinstance(exc, asyncpg.PostgresError) and not isinstance(exc, _UNAVAILABLE):
        return StorageError("the database refused the operation")
    # the connection failed or timed out, or the server is unavailable
    return StorageUnavailable("the database cannot be used right now")


_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection the server dropped, used before asyncpg saw it
    OSError,
    TimeoutError,
)

# Claims, promotions, reaps and heartbeats commit without waiting for the WAL flush (see
# ``needs_flush``): the server's WAL is written in order, so any later, flushed commit (an
# outcome, a submission) makes them durable too.
_BEGIN_RELAXED = "BEGIN; SET LOCAL synchronous_commit = off"
# A claim must walk tasks_ready in its order and stop at the first rows that fit. With the
# type filter, stale statistics (a table just bulk-loaded, not yet analyzed) make the planner
# prefer a bitmap scan that sorts every queued row, per claim: 0.07 ms became 7 ms at 10,000
# queued tasks. No query of a batch wants a bitmap scan; the reads that walk the ready order
# say so too.
_NO_BITMAP = "SET LOCAL enable_bitmapscan = off"


class _Unsent(Exception):
    """A batch failed before any of it reached the server."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Lost(_Unsent):
    """A batch of submissions was sent, and its connection lost before the answer came."""


def _discard(conn: asyncpg.Connection) -> None:
    """Close a pooled connection whose state is unknown; the pool opens another. One that
    was lost is already gone back to the pool, and asyncpg refuses to touch it again."""
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


def _healthy_after(exc: Exception) -> bool:
    """Whether the connection is still fit to use after ``exc`` (an error of the server's
    about one statement, not of the connection)."""
    if _is_bad_data(exc) and not isinstance(exc, asyncpg.PostgresError):
        return True  # asyncpg refused to encode an argument: nothing was sent
    return isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.PostgresConnectionError | asyncpg.AdminShutdownError
    )


def _notices(outcomes: Sequence[Outcome], origin: str) -> list[str]:
    """What other nodes must hear about a batch: new ready work per queue, running tasks
    cancelled (a node runs a cancelled task until it hears)."""
    queues: dict[str, None] = {}
    cancelled: dict[str, None] = {}
    configured: dict[str, None] = {}
    for outcome in outcomes:
        for event in outcome.control:
            configured[event.task_id.removeprefix(QUEUE_SUBJECT)] = None
        for change in outcome.changes:
            task = change.after
            if task.state is TaskState.QUEUED and change.before is not TaskState.QUEUED:
                queues[task.queue] = None
            elif change.event.kind is EventKind.CANCELLED and change.before in HELD_STATES:
                cancelled[task.id] = None
    return (
        [dumps({"kind": "ready", "queue": q, "origin": origin}) for q in queues]
        + [dumps({"kind": "cancel", "task_id": t, "origin": origin}) for t in cancelled]
        + [dumps({"kind": "queue", "queue": q, "origin": origin}) for q in configured]
    )


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """A pooled connection goes back as it came: our sessions never LISTEN, SET, hold cursors
    or session advisory locks. (asyncpg rolls back an open transaction itself.) The default
    reset would cost one more round trip per batch and per read."""


class PostgresJournal:
    """``Journal`` on PostgreSQL, for several nodes sharing one database.

    ``url`` is a libpq URL, ``postgresql://user:password@host:port/dbname?...``; an extra
    ``schema=NAME`` query parameter puts every table in that schema (created if missing; it
    becomes the connections' ``search_path``), so several deployments or test runs can share
    a database. The other query parameters go to asyncpg as they are. Notices travel on the
    channel ``actorq``, or ``actorq.NAME`` with a schema.
    """

    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        command_timeout: float = 60.0,
        keepalive: float = 30.0,
        reconnect_delay: tuple[float, float] = (0.1, 30.0),
    ) -> None:
        self._dsn, self.schema = split_url(url)
        self.channel = "actorq" if self.schema is None else f"actorq.{self.schema}"
        # JIT only slows short queries. The URL may name the application (pg_stat_activity).
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self._dsn).query))
        settings = {"application_name": query.get("application_name", "actorq"), "jit": "off"}
        if self.schema is not None:
            settings["search_path"] = f'"{self.schema}"'
        self._connect: dict[str, Any] = {
            "server_settings": settings,
            "command_timeout": command_timeout,
        }
        self._sizes = (min_connections, max_connections)
        self._timeout = command_timeout
        self._keepalive = keepalive
        self._delays = reconnect_delay
        self._origin = uuid.uuid4().hex  # tells our own notices apart from other nodes'
        self._pool: asyncpg.Pool | None = None
        self._listener: Listener | None = None
        self._shared = SharedCommits(self._run_alone)  # concurrent callers share a commit
        self._submitter = OwnConnection(self._connect_one)  # see pg_submit
        self._claimer = OwnConnection(lambda: self._connect_one(pg_claim.SETTINGS))  # pg_claim

    # -- connections ---------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                reset=_nothing_to_reset,
                **self._connect,
            )
            async with self._acquire() as conn, conn.transaction():
                # Nodes starting together take turns: the first migrates, the others find
                # the schema current.
                key = self.schema or await conn.fetchval("SELECT current_schema()")
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                                   f"actorq.migrate:{key}")  # fmt: skip
                upgraded_from = await self._migrate(conn)
                await self._catch_up(conn)
                if 0 < upgraded_from < REFOLD_BELOW:  # see REFOLD_BELOW
                    rows = await conn.fetch(Q["events"], 0, None)  # LIMIT NULL: all of them
                    tasks = lifecycle.fold([event_from_row(r) for r in rows])
                    head, _ = await conn.fetchrow(Q["head"])
                    await self._replace_on(conn, list(tasks.values()), head)
        except _DRIVER_ERRORS as exc:
            await self.close()
            raise _translate(exc) from exc
        except BaseException:  # a journal the projection cannot follow, a cancelled start
            await self.close()
            raise

    async def _connect_one(self, settings: Mapping[str, str] | None = None) -> asyncpg.Connection:
        """A connection outside the pool, with ``settings`` beside the journal's own."""
        if self._pool is None:
            raise StorageUnavailable("the journal is not open")
        options = self._connect
        if settings:
            options = {**options, "server_settings": {**options["server_settings"], **settings}}
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn, timeout=self._timeout, **options
        )
        return conn

    async def close(self) -> None:
        await self._shared.wait_closed()
        await self._submitter.close(self._timeout)
        await self._claimer.close(self._timeout)
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self._timeout)
            except TimeoutError:
                log.warning("connections still busy after %.0fs: closing them", self._timeout)
                pool.terminate()

    def _acquire(self) -> Any:
        if self._pool is None:
            raise StorageUnavailable("the journal is not open")
        return self._pool.acquire(timeout=self._timeout)

    async def _migrate(self, conn: asyncpg.Connection) -> int:
        """Apply the migrations the database lacks; the version it had (0: a new one)."""
        if self.schema is not None:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer)")
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        for number, sql in migrations("postgres"):
            if number > current:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_version VALUES ($1)", number)
        return int(current)

    async def _catch_up(self, conn: asyncpg.Connection) -> None:
        """Apply journal events the projection has not seen (a projection left behind).

        Events and projection are written in one transaction, so this finds work only after
        the projection was damaged or replaced by hand.
        """
        journal_seq, projection_seq = await conn.fetchrow(Q["head"])
        if journal_seq <= projection_seq:
            return
        rows = await conn.fetch(Q["events"], projection_seq, None)  # LIMIT NULL: all of them
        events = [event_from_row(r) for r in rows]
        await refold(PgTx(conn), events)
        await conn.execute(Q["set_floor"], str(journal_seq))

    # -- writes --------------------------------------------------------------------------

    async def run(self, ops: Sequence[Op]) -> list[Outcome]:
        ops = [stamped(op) for op in ops]  # here, in the caller's context (see auth.ACTOR)
        return await self._shared.run(ops)

    async def _run_alone(self, ops: list[Op]) -> list[Outcome]:
        claim = pg_claim.lone_claim(ops)
        if claim is not None and (claimed := await self._claim_at_once(claim)) is not None:
            return [claimed]  # a lone claim in one statement (see pg_claim)
        return await self._run(ops, None)

    async def run_in(self, connection: Any, ops: Sequence[Op]) -> list[Outcome]:
        """Run ``ops`` inside the caller's open transaction on ``connection`` (asyncpg).

        They take effect if and only if the caller commits; other nodes hear of them at that
        commit. A savepoint keeps a failure here from aborting the caller's transaction, and
        the journal's schema is on the caller's search_path only while these statements run.
        """
        if not isinstance(connection, asyncpg.Connection) or not connection.is_in_transaction():
            raise InvalidInput("a connection to enqueue with must be inside a transaction")
        return await self._run(ops, connection)

    async def _run(self, ops: Sequence[Op], caller: asyncpg.Connection | None) -> list[Outcome]:
        at_once = None  # submissions alone: one statement (see pg_submit)
        if caller is None and submissions_only(ops):
            at_once = prepare(ops, self.channel, self._origin)
        for attempt in range(1, _RETRIES + 1):
            try:
                if caller is not None:
                    async with caller.transaction():  # a savepoint: theirs survives our errors
                        return await self._batch(caller, ops, borrowed=True)
                return await self._on_pool(ops, at_once)
            except _Unsent as unsent:
                # A pooled connection the server dropped while it sat idle: nothing of this
                # batch reached the server, so another connection may run it.
                if attempt == _RETRIES:
                    raise _translate(unsent.cause) from unsent.cause
                log.info("a pooled connection was lost (%s); running the batch on another",
                         unsent.cause)  # fmt: skip
                continue
            except asyncpg.TransactionRollbackError as exc:  # deadlock, serialization
                if attempt == _RETRIES:
                    raise _translate(exc) from exc
            except asyncpg.UniqueViolationError as exc:
                # Another node took the same key between our check and our insert: run the
                # batch again, and its check now turns it into that one submit's error.
                if attempt == _RETRIES or exc.constraint_name not in _RACED_KEYS:
                    raise _translate(exc) from exc
            except _DRIVER_ERRORS as exc:
                raise _translate(exc) from exc
            log.debug("batch of %d operations lost a race with another node; again", len(ops))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _on_pool(self, ops: Sequence[Op], at_once: Prepared | None) -> list[Outcome]:
        """One attempt at a batch: submissions alone on their own connection while it is
        free (see ``pg_submit``), anything else on a pooled one."""
        try:
            if at_once is not None:
                async with self._submitter.free() as own:
                    if own is not None:
                        return await self._submit_on(own, ops, at_once)
            async with self._acquire() as conn:
                return await self._submit_on(conn, ops, at_once)
        except _Lost as lost:
            # The answer was lost with the connection: the journal says whether the batch
            # committed (all of it, or none). If not, it is as if it was never sent.
            assert at_once is not None
            seqs = await self._written(at_once)
            if seqs is None:
                raise _Unsent(lost.cause) from lost.cause
            return settle(at_once, seqs)

    async def _submit_on(
        self, conn: asyncpg.Connection, ops: Sequence[Op], at_once: Prepared | None
    ) -> list[Outcome]:
        if at_once is not None:
            done = await self._submit_at_once(conn, at_once)
            if done is not None:
                return done
        return await self._run_on(conn, ops)

    async def _submit_at_once(
        self, conn: asyncpg.Connection, prepared: Prepared
    ) -> list[Outcome] | None:
        """Submissions alone in one statement (see ``pg_submit``), or None for the general
        path. A connection found closed before the statement is sent is ``_Unsent``; one lost
        on the way is ``_Lost``. A timeout stays a timeout: the statement may still run."""
        if conn.is_closed():
            _discard(conn)
            raise _Unsent(StorageUnavailable("a pooled connection was closed"))
        try:
            return await send(conn, Q["submit"], prepared)
        except Exception as exc:
            if _healthy_after(exc):
                raise
            _discard(conn)
            if isinstance(exc, TimeoutError):
                raise
            raise _Lost(exc) from exc
        except BaseException:
            _discard(conn)  # cancelled mid-query: its state is unknown
            raise

    async def _claim_at_once(self, op: Claim) -> Outcome | None:
        """A lone claim in one statement (see ``pg_claim``), or None for the general path:
        its connection is busy (another claim still runs on it), or a served queue limits
        claims, or the connection failed. A claim whose answer was lost may have committed:
        its tasks wait, held, for their lease to end, and the reaper gives them back with
        their attempts intact."""
        try:
            async with self._claimer.free() as own:
                if own is None:
                    return None
                try:
                    rows = await own.fetch(Q["claim_now"], *pg_claim.arguments(op))
                except BaseException as exc:
                    if not (isinstance(exc, Exception) and _healthy_after(exc)):
                        _discard(own)  # lost, or cancelled mid-query: the next claim opens another
                    raise
        except _DRIVER_ERRORS as exc:
            if _healthy_after(exc):
                raise _translate(exc) from exc
            # The pool's path tells a database that is down from one connection it dropped.
            log.info("the claim connection failed (%r): claiming the general way", exc)
            return None
        return pg_claim.settle(op, rows)

    async def _written(self, prepared: Prepared) -> list[int] | None:
        """Whether ``prepared`` committed (see ``pg_submit.written``), asked on another
        connection; the pool's other connections may be as dead as the one just lost."""
        for attempt in range(1, _RETRIES + 1):
            try:
                async with self._acquire() as conn:
                    try:
                        return await written(conn, Q["submitted_seqs"], prepared)
                    except Exception as exc:
                        if not _healthy_after(exc):
                            _discard(conn)
                        raise
            except _DRIVER_ERRORS as exc:
                if attempt == _RETRIES or _healthy_after(exc):
                    raise _translate(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_on(self, conn: asyncpg.Connection, ops: Sequence[Op]) -> list[Outcome]:
        """One batch in its own transaction on a pooled connection."""
        try:
            begin = "BEGIN" if needs_flush(ops) else _BEGIN_RELAXED
            await conn.execute(f"{begin}; {_NO_BITMAP}")
        except _DRIVER_ERRORS as exc:
            if _healthy_after(exc):
                raise
            _discard(conn)  # the pool opens a new one in its place
            raise _Unsent(exc) from exc
        try:
            outcomes = await self._batch(conn, ops, borrowed=False)
            await conn.execute("COMMIT")
        except BaseException as exc:
            if not isinstance(exc, Exception) or not _healthy_after(exc):
                _discard(conn)  # cancelled mid-query or broken: its state is unknown
            elif conn.is_in_transaction():
                try:
                    await conn.execute("ROLLBACK")
                except _DRIVER_ERRORS:
                    _discard(conn)
            raise
        return outcomes

    async def _batch(
        self, conn: asyncpg.Connection, ops: Sequence[Op], *, borrowed: bool
    ) -> list[Outcome]:
        path = None
        if borrowed and self.schema is not None:
            path = await conn.fetchval("SELECT current_setting('search_path')")
            await conn.execute(Q["set_path"], f'"{self.schema}"')
        outcomes = await BatchRun(PgTx(conn)).run(ops)
        # Heard at the caller's commit, a borrowed run's notices are not this node's own
        # writes: "txn" as origin makes this node act on them like any other's.
        notices = _notices(outcomes, "txn" if borrowed else self._origin)
        if notices:
            await conn.execute(Q["notify"], self.channel, notices)
        if path is not None:
            await conn.execute(Q["set_path"], path)
        return outcomes

    async def replace_projection(
        self,
        tasks: Sequence[Task],
        seq: int,
        queues: Sequence[QueueSettings] | None = None,
        schedules: Sequence[Schedule] | None = None,
    ) -> None:
        try:
            async with self._acquire() as conn, conn.transaction():
                await self._replace_on(conn, tasks, seq)
                if queues is not None:
                    await _replace_queues(conn, queues)
                if schedules is not None:
                    await _replace_schedules(conn, schedules)
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc

    async def _replace_on(self, conn: asyncpg.Connection, tasks: Sequence[Task], seq: int) -> None:
        await conn.execute(Q["lock_tasks"])
        await conn.execute(Q["clear_tasks"])
        tx = PgTx(conn)
        for start in range(0, len(tasks), PAGE):
            chunk = tasks[start : start + PAGE]
            await tx.write([], chunk, {t.id for t in chunk})
        await conn.execute(Q["set_floor"], str(seq))

    # -- notices -------------------------------------------------------------------------

    async def subscribe(self, on_notice: Callable[[Notice], None]) -> None:
        """LISTEN on a connection of its own; if it drops, reconnect with backoff and tell
        ``on_notice`` to look for work (what was said meanwhile is lost)."""
        if self._listener is not None:
            raise StorageError("this journal already has a subscriber")
        listener = Listener(self._dsn, self._connect, self.channel, self._origin,
                            self._keepalive, self._delays, self._timeout,
                            _translate, _DRIVER_ERRORS)  # fmt: skip
        await listener.start(on_notice)
        self._listener = listener

    # -- reads ---------------------------------------------------------------------------

    async def _fetch(self, name_or_sql: str, *args: Any) -> list[Any]:
        try:
            async with self._acquire() as conn:
                rows: list[Any] = await conn.fetch(Q.get(name_or_sql, name_or_sql), *args)
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
        return rows

    async def _tasks(self, name_or_sql: str, *args: Any) -> list[Task]:
        return [task_from_row(r) for r in await self._fetch(name_or_sql, *args)]

    async def peek_ready(
        self, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> Task | None:
        args = (array(queues), array(types))
        try:
            async with self._acquire() as conn:
                row = await conn.fetchrow(Q["peek_ready"], *args)
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
        return None if row is None else task_from_row(row)

    async def get(self, task_id: str) -> Task:
        found = await self._tasks("get", task_id)
        if not found:
            rows = await self._fetch("last_kind", task_id)
            raise gone_error(task_id, rows[0][0] if rows else None)
        return found[0]

    async def list_tasks(self, query: TaskFilter, limit: int, cursor: str | None) -> Page:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("state", query.state), ("queue", query.queue), ("type", query.type)):
            if value is not None:
                args.append(str(value))
                where.append(f"{column} = ${len(args)}")
        if query.by is not None:  # the partial index journal_submitted_by finds them
            args.append(query.by)
            where.append("id IN (SELECT task_id FROM journal WHERE kind = 'submitted' "
                         f"AND actor = ${len(args)})")  # fmt: skip
        if cursor is not None:
            args.append(decode_cursor(cursor))
            where.append(f"id < ${len(args)}")
        sql = f"SELECT {COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY id DESC LIMIT ${len(args) + 1}"
        tasks = await self._tasks(sql, *args, limit + 1)
        more = len(tasks) > limit
        tasks = tasks[:limit]
        return Page(tasks, encode_cursor(tasks[-1]) if more else None)

    async def history(self, task_id: str) -> list[Event]:
        rows = await self._fetch("history", task_id)
        if not rows:
            await self.get(task_id)  # raises TaskNotFound for an unknown id
        return [event_from_row(r) for r in rows]

    async def counts(self) -> dict[tuple[str, TaskState], int]:
        return {(q, TaskState(s)): n for q, s, n in await self._fetch("counts")}

    async def next_due(self) -> float | None:
        (row,) = await self._fetch("next_due")
        return None if row[0] is None else float(row[0])

    async def next_lease_expiry(self) -> float | None:
        (row,) = await self._fetch("next_lease_expiry")
        return None if row[0] is None else float(row[0])

    async def running_on(self, node: str) -> list[Task]:
        pattern = node.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
        return await self._tasks("running_on", pattern)

    async def head(self) -> Head:
        (row,) = await self._fetch("head")
        return Head(int(row[0]), int(row[1]))

    def events(self, after_seq: int = 0, until: float | None = None) -> AsyncIterator[Event]:
        """Events in seq order. Numbers commit out of order while nodes write: for a replay or
        an export this wants quiet writers; to follow the journal live, use ``tail``."""

        async def page(after: int, limit: int) -> list[Any]:
            return await self._fetch("events", after, limit)

        return events_in_pages(page, after_seq, until)

    async def tail_position(self) -> int:
        (row,) = await self._fetch("horizon")
        return int(row[0])

    async def get_many(self, task_ids: Sequence[str]) -> dict[str, Task]:
        return {t.id: t for t in await self._tasks("get_many", list(task_ids))}

    async def xid_of(self, seq: int) -> int | None:
        rows = await self._fetch("xid_of", seq)
        return int(rows[0][0]) if rows else None

    async def missed(self, since: Since, until: int, after: int, limit: int) -> list[Event]:
        rows = await self._fetch("missed", since.seq, since.first, since.end, until, after, limit)
        return [event_from_row(r) for r in rows]

    async def tail(self, after: int = 0, limit: int = PAGE) -> tuple[list[Event], int]:
        """Events committed since position ``after``, and the position to pass next time.

        Start with 0; positions are transaction ids (xid8), not seqs. Following by
        ``seq > last seen`` would skip rows: a transaction can take seq 10, another take 11
        and commit, and the first commit 10 afterwards. Here a row is handed out only once
        every transaction older than its own has ended (its xid is below
        ``pg_snapshot_xmin(pg_current_snapshot())``): no row can appear behind the
        position any more, so none is skipped and none is handed out twice.

        Each call returns whole transactions (at least one, even past ``limit``), ordered by
        seq. A transaction is held back while one with a lower seq that committed later is
        not final yet, so each task's events arrive in the order they happened (that is,
        by seq). Across calls the global seq order is not kept: a low seq that commits late
        comes late. The price of safety is lag: any long transaction in the cluster (even in
        another database) holds the tail back until it ends.
        """
        try:
            async with (
                self._acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                return await read_tail(conn, after, limit)
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc

    def tasks(self) -> AsyncIterator[Task]:
        async def page(after: str, limit: int) -> list[Task]:
            return await self._tasks("all_tasks", after, limit)

        return tasks_in_pages(page)

    # -- schedules -----------------------------------------------------------------------

    async def schedules(self) -> list[Schedule]:
        return [schedule_from_row(r) for r in await self._fetch("all_schedules")]

    async def get_schedule(self, name: str) -> Schedule:
        rows = await self._fetch("get_schedule", name)
        if not rows:
            raise ScheduleNotFound(name)
        return schedule_from_row(rows[0])

    async def next_schedule_due(self) -> float | None:
        (row,) = await self._fetch("next_schedule_due")
        return None if row[0] is None else float(row[0])

    async def replace_schedules(self, schedules: Sequence[Schedule]) -> None:
        try:
            async with self._acquire() as conn, conn.transaction():
                await _replace_schedules(conn, schedules)
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc

    # -- nodes ---------------------------------------------------------------------------

    async def _execute(self, name: str, *args: Any) -> None:
        try:
            async with self._acquire() as conn:
                await conn.execute(Q[name], *args)
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc

    async def create_token(self, token: Token) -> None:
        if not await self._fetch("create_token", *token_to_row(token)):
            raise DuplicateToken(token.name)

    async def tokens(self) -> list[Token]:
        return [token_from_row(r) for r in await self._fetch("all_tokens")]

    async def revoke_token(self, name: str, at: float) -> Token:
        rows = await self._fetch("revoke_token", name, at)
        if not rows:
            raise TokenNotFound(name)
        return token_from_row(rows[0])

    async def register_node(self, node: Node, *, start: bool = False) -> Orders:
        rows = await self._fetch("register_node", *node_to_row(node), start)
        return Orders(bool(rows[0][0]), bool(rows[0][1])) if rows else Orders()

    async def remove_node(self, node: str) -> None:
        await self._execute("remove_node", node)

    async def leave_node(self, node: str, at: float) -> None:
        await self._execute("leave_node", node, at)

    async def forget_nodes(self, before: float) -> None:
        await self._execute("forget_nodes", before)

    async def command_node(self, node: str, paused: bool | None, drain: bool) -> None:
        """The wish and its notice commit together: the target hears of it at once."""
        notice = dumps({"kind": "node", "node": node, "origin": self._origin})
        try:
            async with self._acquire() as conn, conn.transaction():
                await conn.execute(Q["command_node"], node, paused, drain)
                await conn.execute(Q["notify"], self.channel, [notice])
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc

    async def live_nodes(self, since: float) -> list[Node]:
        return [node_from_row(r) for r in await self._fetch("live_nodes", since)]

    async def list_nodes(self, since: float) -> list[Node]:
        return [node_from_row(r) for r in await self._fetch("list_nodes", since)]

    async def get_node(self, node: str) -> Node | None:
        rows = await self._fetch("get_node", node)
        return node_from_row(rows[0]) if rows else None

    async def queued_by_type(self) -> dict[tuple[str, str], int]:
        return {(q, t): n for q, t, n in await self._fetch("queued_by_type")}

    # -- queues ----------------------------------------------------------------------------

    async def queue_settings(self) -> list[QueueSettings]:
        return [queue_from_row(r) for r in await self._fetch("all_queues")]

    async def queue_activity(self, since: float) -> QueueActivity:
        oldest = {q: float(at) for q, at in await self._fetch("oldest_queued")}
        finished = {q: int(n) for q, n in await self._fetch("finished_since", since)}
        return QueueActivity(oldest, finished)

    async def replace_queues(self, queues: Sequence[QueueSettings]) -> None:
        try:
            async with self._acquire() as conn, conn.transaction():
                await _replace_queues(conn, queues)
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc

    # -- seals and archives ----------------------------------------------------------------

    async def seal_mark(self) -> SealMark:
        """The last seq drawn, then a fresh xid (taken by a statement of its own, after). A
        writer takes its xid before its first seq (see the ``allocate`` query), so every seq
        up to the mark belongs to a transaction with an xid below it: once they have all
        ended, no seq up to the mark can still commit."""
        (drawn,) = await self._fetch(_S["seq_drawn"])
        (xid,) = await self._fetch(_S["next_xid"])
        return SealMark(int(drawn[0]), int(xid[0]))

    async def mark_final(self, mark: SealMark) -> bool:
        (row,) = await self._fetch(_S["oldest_xid"])
        return int(row[0]) >= mark.xid

    async def write_seal(self, upto: int, limit: int, make: MakeSeal) -> Seal | None:
        try:
            async with self._acquire() as conn, conn.transaction():
                key = self.schema or await conn.fetchval("SELECT current_schema()")
                if not await conn.fetchval(_S["seal_lock"], f"actorq.seal:{key}"):
                    return None
                found = await conn.fetchrow(_S["seal_head"])
                head = None if found is None else seal_from_row(found)
                after = 0 if head is None else head.last_seq
                rows = [tuple(r) for r in await conn.fetch(_S["rows_after"], after, upto, limit)]
                if not rows:
                    return None
                last = upto if len(rows) < limit else int(rows[-1][_SEQ_AT])
                seal = await asyncio.to_thread(make, head, rows, last)
                await conn.execute(_S["insert_seal"], *seal_to_row(seal))
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
        return seal

    async def seal_head(self) -> Seal | None:
        return await read_head(self._fetch, _S)

    def seal_list(self, after_last_seq: int = 0) -> AsyncIterator[Seal]:
        return read_seals(self._fetch, _S, after_last_seq)

    def journal_rows(self, after_seq: int = 0, upto: int | None = None) -> AsyncIterator[Any]:
        return read_rows(self._fetch, _S, after_seq, upto)

    async def archived_through(self) -> int:
        (row,) = await self._fetch(_S["archived_through"])
        return int(row[0])

    async def record_verification(self, at: float, ok: bool, head: int, report: str) -> None:
        await self._fetch(_S["record_verification"], at, ok, head, report)

    async def last_verification(self) -> tuple[float, bool, int, str] | None:
        rows = await self._fetch(_S["last_verification"])
        return None if not rows else (float(rows[0][0]), bool(rows[0][1]), int(rows[0][2]),
                                      str(rows[0][3]))  # fmt: skip

    async def remove_archived(self, seals: Sequence[Seal], segment: str, at: float) -> int:
        removed = 0
        try:
            async with self._acquire() as conn, conn.transaction():
                for seal in seals:
                    await conn.execute(_S["record_archived"], seal.last_seq, seal.first_seq,
                                       segment, at)  # fmt: skip
                    status = await conn.execute(_S["delete_archived"], seal.first_seq,
                                                seal.last_seq)  # fmt: skip
                    removed += int(status.rsplit(" ", 1)[1])
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
        return removed


async def _replace_queues(conn: asyncpg.Connection, queues: Sequence[QueueSettings]) -> None:
    await conn.execute(Q["clear_queues"])
    for settings in queues:
        await conn.execute(Q["save_queue"], *queue_to_row(settings), None, None, True)


async def _replace_schedules(conn: asyncpg.Connection, schedules: Sequence[Schedule]) -> None:
    await conn.execute(Q["clear_schedules"])
    await PgTx(conn).write_schedules([], [(s.name, None, s) for s in schedules])
