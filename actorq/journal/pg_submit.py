"""Submissions on PostgreSQL in one round trip: the common case of a client's enqueue.

A batch of nothing but submissions needs no lock and no read the database cannot do in the
same call: ``submit_tasks`` (migration 013) numbers the events, writes the journal and the
projection and notifies the nodes, in one implicit transaction. It writes only when the
general path (``BatchRun``) would decide the same without a lock (no queue of the batch has
a max_depth, no live task holds one of its idempotency keys); otherwise it writes nothing
and answers None, and the caller runs the general path, which locks, counts and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

import actorq.lifecycle as lifecycle
from actorq.journal.base import Change, Op, Outcome, Submit
from actorq.journal.rows import dumps
from actorq.model import Event, EventKind, TaskState


def submissions_only(ops: Sequence[Op]) -> bool:
    return bool(ops) and all(isinstance(op, Submit) and op.tasks for op in ops)


async def submit_at_once(
    conn: asyncpg.Connection, sql: str, ops: Sequence[Op], channel: str, origin: str
) -> list[Outcome] | None:
    """Run ``ops`` (all ``Submit``) as one statement; None: the general path must run them
    (the gate found a limit or a key to check, or the batch repeats an id or a key)."""
    events: list[Event] = []
    ids: set[str] = set()
    keys: set[str] = set()
    columns: tuple[list[Any], ...] = tuple([] for _ in range(16))
    (c_id, c_type, c_queue, c_payload, c_priority, c_state, c_attempts, c_timeout, c_run_at,
     c_at, c_metadata, c_key, c_retry, c_node, c_data, c_actor) = columns  # fmt: skip
    ready: dict[str, None] = {}
    for op in ops:
        assert isinstance(op, Submit)
        actor = op.actor or op.node
        for new in op.tasks:
            if new.id in ids:
                return None  # the general path says which
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
            c_id.append(new.id)
            c_type.append(new.type)
            c_queue.append(new.queue)
            c_payload.append(dumps(new.payload))
            c_priority.append(new.priority)
            c_state.append(state.value)
            c_attempts.append(new.max_attempts)
            c_timeout.append(new.timeout)
            c_run_at.append(float(data["run_at"]))
            c_at.append(op.at)
            c_metadata.append(dumps(new.metadata))
            c_key.append(key)
            c_retry.append(None if new.retry is None else dumps(data["retry"]))  # as task_to_row
            c_node.append(op.node)
            c_data.append(dumps(data))
            c_actor.append(actor)
    notices = [dumps({"kind": "ready", "queue": q, "origin": origin}) for q in ready]
    seqs = await conn.fetchval(sql, *columns, channel, notices)
    if seqs is None:
        return None
    outcomes = []
    numbered = iter(zip(events, seqs, c_actor, strict=True))
    for op in ops:
        assert isinstance(op, Submit)
        changes = []
        for _, (event, seq, actor) in zip(op.tasks, numbered, strict=False):
            final = Event(EventKind.SUBMITTED, event.task_id, event.at, event.node, event.data,
                          None, seq, actor)  # fmt: skip
            changes.append(Change(final, None, lifecycle.apply(None, final)))
        outcomes.append(Outcome([c.after for c in changes], changes=changes))
    return outcomes
