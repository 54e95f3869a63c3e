"""Submissions on PostgreSQL in one round trip: the common case of a client's enqueue.

A batch of nothing but submissions needs no lock and no read the database cannot do in the
same call: ``submit_rows`` (migrations 013, 016) numbers the events, writes the journal and the
projection and notifies the nodes, in one implicit transaction. It writes only when the
general path (``BatchRun``) would decide the same without a lock (no queue of the batch has
a max_depth, no live task holds one of its idempotency keys); otherwise it writes nothing
and answers None, and the caller runs the general path, which locks, counts and says why.
A batch of more than ``PART`` tasks is one explicit transaction of several such calls, each
sent while the client builds the next part and settles the last, so the client's work and the
server's overlap; it still commits whole or not at all.

Batches of submissions run on a connection of their own (``OwnConnection``) while it is free:
taking a pooled connection and giving it back costs more CPU than the call itself (two
timers, a waiter queue), which is most of a lone enqueue's time on the client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import attrs

import actorq.lifecycle as lifecycle
from actorq.errors import StorageError
from actorq.journal.base import Change, Op, Outcome, Submit
from actorq.journal.rows import dumps, dumps_checked, stored_policy
from actorq.model import Event, EventKind, NewTask, TaskState


def submissions_only(ops: Sequence[Op]) -> bool:
    return bool(ops) and all(isinstance(op, Submit) and op.tasks for op in ops)


# Tasks per statement when a batch is larger: while the server writes one part, the client
# builds the next and settles the last (the two take about as long per task), so a bulk
# enqueue costs about the larger of the two instead of their sum.
PART = 250


@attrs.frozen
class Part:
    """Some tasks of a batch as one call of the ``submit`` query takes them."""

    events: list[Event]  # numbered 0: the seqs come from the database
    actors: list[str]
    arguments: tuple[Any, ...]


@attrs.define(eq=False)
class Prepared:
    """A batch of submissions, checked; its parts are made as they are first sent and kept,
    so a second attempt sends the same ids and times."""

    ops: Sequence[Submit]
    channel: str
    origin: str
    items: list[tuple[Submit, NewTask]]
    _parts: dict[int, Part] = attrs.field(factory=dict)

    @property
    def ids(self) -> list[str]:
        return [new.id for _, new in self.items]

    @property
    def count(self) -> int:
        return max(1, -(-len(self.items) // PART))

    def part(self, index: int) -> Part:
        made = self._parts.get(index)
        if made is None:
            made = self._parts[index] = self._make(self.items[index * PART : (index + 1) * PART])
        return made

    def _make(self, items: Sequence[tuple[Submit, NewTask]]) -> Part:
        events: list[Event] = []
        rows: list[tuple[Any, ...]] = []
        actors: list[str] = []
        ready: dict[str, None] = {}
        for op, new in items:
            actor = op.actor or op.node
            event = lifecycle.submitted_event(new, at=op.at, node=op.node)
            data = event.data
            state = lifecycle.state_after(event)
            if state is TaskState.QUEUED:
                ready[new.queue] = None
            events.append(event)
            actors.append(actor)
            # One row of the type submission_in (migration 016), field by field.
            rows.append((
                new.id, new.type, new.queue, dumps_checked(new.payload), new.priority,
                state.value, new.max_attempts, new.timeout, float(data["run_at"]), op.at,
                dumps_checked(new.metadata), new.idempotency_key,
                None if new.retry is None else stored_policy(new.retry), op.node,
                dumps_checked(data), actor,
            ))  # fmt: skip
        # Within one transaction, the same notice twice reaches the listeners once.
        notices = [dumps({"kind": "ready", "queue": q, "origin": self.origin}) for q in ready]
        return Part(events, actors, (rows, self.channel, notices))


def prepare(ops: Sequence[Op], channel: str, origin: str) -> Prepared | None:
    """``ops`` (all ``Submit``) checked for the query; None: the general path must run them
    (the batch repeats an id or an idempotency key, which it refuses by name)."""
    ids: set[str] = set()
    keys: set[str] = set()
    items: list[tuple[Submit, NewTask]] = []
    submits = [op for op in ops if isinstance(op, Submit)]
    for op in submits:
        for new in op.tasks:
            if new.id in ids:
                return None
            ids.add(new.id)
            key = new.idempotency_key
            if key is not None:
                if key in keys:
                    return None
                keys.add(key)
            items.append((op, new))
    return Prepared(submits, channel, origin, items)


class _Gated(Exception):
    """A part's gate found a max_depth or a live key: the whole batch goes back."""


async def send(conn: asyncpg.Connection, sql: str, prepared: Prepared) -> list[Outcome] | None:
    """Run the batch; None: it wrote nothing, and the general path must decide (the gate
    found a max_depth or a live key to check). One part is one implicit transaction; more
    are one transaction, each part's statement sent while the client builds the next."""
    if prepared.count == 1:
        part = prepared.part(0)
        seqs = await conn.fetchval(sql, *part.arguments)
        return None if seqs is None else settle(prepared, seqs)
    try:
        async with conn.transaction():
            changes = await _pipelined(conn, sql, prepared)
    except _Gated:
        return None
    return _outcomes(prepared, changes)


async def _pipelined(conn: asyncpg.Connection, sql: str, prepared: Prepared) -> list[Change]:
    changes: list[Change] = []
    last: tuple[Part, Sequence[int]] | None = None
    pending = asyncio.ensure_future(conn.fetchval(sql, *prepared.part(0).arguments))
    try:
        for index in range(prepared.count):
            await asyncio.sleep(0)  # the pending statement goes out
            if index + 1 < prepared.count:
                prepared.part(index + 1)  # made while the server writes this one
            if last is not None:
                changes += _numbered(*last)
            seqs = await pending
            if seqs is None:
                raise _Gated
            last = (prepared.part(index), seqs)
            if index + 1 < prepared.count:
                pending = asyncio.ensure_future(
                    conn.fetchval(sql, *prepared.part(index + 1).arguments)
                )
    except BaseException:
        if not pending.done():  # the connection must be free again before the rollback
            pending.cancel()
            await asyncio.wait([pending])
        raise
    assert last is not None
    return changes + _numbered(*last)


async def written(conn: asyncpg.Connection, sql: str, prepared: Prepared) -> list[int] | None:
    """The seqs of the batch's submitted events, if the batch committed; None if it did not
    (a batch commits whole). For a batch whose connection was lost before its answer came."""
    ids = prepared.ids
    found = dict(await conn.fetch(sql, ids))
    if not found:
        return None
    if len(found) != len(ids):
        raise StorageError("part of a batch of submissions is in the journal")
    return [found[task_id] for task_id in ids]


def settle(prepared: Prepared, seqs: Sequence[int]) -> list[Outcome]:
    """The outcomes of a committed batch whose events took ``seqs``, in order."""
    changes: list[Change] = []
    for index in range(prepared.count):
        changes += _numbered(prepared.part(index), seqs[index * PART : (index + 1) * PART])
    return _outcomes(prepared, changes)


def _numbered(part: Part, seqs: Sequence[int]) -> list[Change]:
    changes = []
    for event, seq, actor in zip(part.events, seqs, part.actors, strict=True):
        final = Event(EventKind.SUBMITTED, event.task_id, event.at, event.node, event.data,
                      None, seq, actor)  # fmt: skip
        changes.append(Change(final, None, lifecycle.apply(None, final)))
    return changes


def _outcomes(prepared: Prepared, changes: list[Change]) -> list[Outcome]:
    outcomes = []
    start = 0
    for op in prepared.ops:
        mine = changes[start : start + len(op.tasks)]
        start += len(op.tasks)
        outcomes.append(Outcome([c.after for c in mine], changes=mine))
    return outcomes


class OwnConnection:
    """One connection kept for batches of submissions, opened at first use and again after
    it was lost or closed. ``free()`` yields it, or None while another batch holds it (a
    caller cancelled while its batch still runs): that batch then takes a pooled one."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connect = connect
        self._conn: asyncpg.Connection | None = None
        self._busy = False

    @contextlib.asynccontextmanager
    async def free(self) -> AsyncIterator[asyncpg.Connection | None]:
        if self._busy:
            yield None
            return
        self._busy = True
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = None
                self._conn = await self._connect()
            yield self._conn
        finally:
            self._busy = False

    async def close(self, timeout: float) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), timeout)
        except (TimeoutError, asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            conn.terminate()
