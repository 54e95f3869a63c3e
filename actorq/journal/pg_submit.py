"""Submissions on PostgreSQL in one round trip: the common case of a client's enqueue.

A batch of nothing but submissions needs no lock and no read the database cannot do in the
same call: ``submit_rows`` (migrations 013, 016) numbers the events, writes the journal and the
projection and notifies the nodes, in one implicit transaction. It writes only when the
general path (``BatchRun``) would decide the same without a lock (no queue of the batch has
a max_depth, no live task holds one of its idempotency keys); otherwise it writes nothing
and answers None, and the caller runs the general path, which locks, counts and says why.

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
from actorq.model import Event, EventKind, TaskState


def submissions_only(ops: Sequence[Op]) -> bool:
    return bool(ops) and all(isinstance(op, Submit) and op.tasks for op in ops)


@attrs.frozen
class Prepared:
    """A batch of submissions as the ``submit`` query takes it, and what it answers from."""

    ops: Sequence[Submit]
    events: list[Event]  # numbered 0: the seqs come from the database
    actors: list[str]
    arguments: tuple[Any, ...]


def prepare(ops: Sequence[Op], channel: str, origin: str) -> Prepared | None:
    """``ops`` (all ``Submit``) as the query's arguments; None: the general path must run them
    (the batch repeats an id or an idempotency key, which it refuses by name)."""
    events: list[Event] = []
    ids: set[str] = set()
    keys: set[str] = set()
    rows: list[tuple[Any, ...]] = []
    actors: list[str] = []
    ready: dict[str, None] = {}
    submits = [op for op in ops if isinstance(op, Submit)]
    for op in submits:
        actor = op.actor or op.node
        for new in op.tasks:
            if new.id in ids:
                return None
            ids.add(new.id)
            key = new.idempotency_key
            if key is not None:
                if key in keys:
                    return None
                keys.add(key)
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
                dumps_checked(new.metadata), key,
                None if new.retry is None else stored_policy(new.retry), op.node,
                dumps_checked(data), actor,
            ))  # fmt: skip
    notices = [dumps({"kind": "ready", "queue": q, "origin": origin}) for q in ready]
    return Prepared(submits, events, actors, (rows, channel, notices))


async def send(conn: asyncpg.Connection, sql: str, prepared: Prepared) -> list[Outcome] | None:
    """Run the batch; None: it wrote nothing, and the general path must decide (the gate
    found a max_depth or a live key to check)."""
    seqs = await conn.fetchval(sql, *prepared.arguments)
    return None if seqs is None else settle(prepared, seqs)


async def written(conn: asyncpg.Connection, sql: str, prepared: Prepared) -> list[int] | None:
    """The seqs of the batch's submitted events, if the batch committed; None if it did not
    (a batch commits whole). For a batch whose connection was lost before its answer came."""
    ids = [e.task_id for e in prepared.events]
    found = dict(await conn.fetch(sql, ids))
    if not found:
        return None
    if len(found) != len(ids):
        raise StorageError("part of a batch of submissions is in the journal")
    return [found[task_id] for task_id in ids]


def settle(prepared: Prepared, seqs: Sequence[int]) -> list[Outcome]:
    """The outcomes of a committed batch whose events took ``seqs``, in order."""
    outcomes = []
    numbered = iter(zip(prepared.events, seqs, prepared.actors, strict=True))
    for op in prepared.ops:
        changes = []
        for _, (event, seq, actor) in zip(op.tasks, numbered, strict=False):
            final = Event(EventKind.SUBMITTED, event.task_id, event.at, event.node, event.data,
                          None, seq, actor)  # fmt: skip
            changes.append(Change(final, None, lifecycle.apply(None, final)))
        outcomes.append(Outcome([c.after for c in changes], changes=changes))
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
