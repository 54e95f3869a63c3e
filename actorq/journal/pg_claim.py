"""A lone claim on PostgreSQL in one round trip: the common case of an idle node that hears
of new work.

A claim that runs alone (nothing else in the writer's batch), for queues none of which limits
claims, needs no decision the database cannot make in the same statement: ``claim_now`` takes
the best ready tasks, locked, writes their ``claimed`` events and moves them to ``claimed``,
as ``BatchRun`` would (``lifecycle.claimed_event``, folded: state, worker, lease, no start,
updated_at and seq). Here the same events are built again from its answer and folded by
``lifecycle.apply`` into the tasks the caller gets; a test compares the projection this path
writes with the journal's replay. A claim the statement cannot take (a served queue is paused
or has a concurrency or rate limit) writes nothing and goes the general way.

It runs on a connection of its own whose commits do not wait for the WAL flush, as every
claim's (``_BEGIN_RELAXED``: a later flushed commit makes it durable), and that never plans a
bitmap scan (``_NO_BITMAP``): one statement, one round trip, instead of four.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

import actorq.lifecycle as lifecycle
from actorq.journal import claims
from actorq.journal.base import Change, Claim, Op, Outcome
from actorq.journal.pg_tx import array
from actorq.journal.rows import dumps, task_from_row

# The claim connection's settings, beside the journal's own.
SETTINGS = {"synchronous_commit": "off", "enable_bitmapscan": "off"}


def lone_claim(ops: Sequence[Op]) -> Claim | None:
    """The batch's claim, if the batch is that claim alone, serves its queues in no order of
    tiers (those take one read per tier: see ``claims.by_tiers``) and is not known to meet a
    queue that limits claims (it would only find that out)."""
    if len(ops) != 1 or not isinstance(ops[0], Claim):
        return None
    op = ops[0]
    return None if op.limited or claims.in_tier_order(op.tiers) else op


def arguments(op: Claim) -> tuple[Any, ...]:
    """``claim_now``'s arguments for ``op``."""
    until = op.at + op.lease_seconds
    data = lifecycle.claimed_event("", "", at=op.at, node=op.node, until=until).data
    return (
        array(op.queues),
        array(op.types),
        len(op.workers),
        list(op.workers),
        op.at,
        op.node,
        until,
        dumps(data),
    )


def settle(op: Claim, rows: Sequence[Any]) -> Outcome | None:
    """The claim's outcome from ``claim_now``'s rows; None if it took nothing because a served
    queue limits claims (the general path decides then)."""
    if rows[0][0]:
        return None
    until = op.at + op.lease_seconds
    changes = []
    for row in rows:
        if row[1] is None:
            continue  # nothing was ready
        before = task_from_row(row[3:])
        made = lifecycle.claimed_event(before.id, op.workers[row[2] - 1], at=op.at,
                                       node=op.node, until=until)  # fmt: skip
        event = attrs.evolve(made, seq=row[1], actor=op.node)  # as the statement wrote it
        changes.append(Change(event, before.state, lifecycle.apply(before, event)))
    return Outcome([c.after for c in changes], changes=changes)
