"""Which ready tasks a claim may take: the limits of the queues (paused, concurrency, rate)
and a node's order over its queues (``--queues`` tiers and weights), for any backend.

A claim reads the settings of the queues it serves that limit claims, locked (PostgreSQL:
``FOR UPDATE``; SQLite has one writer), so two nodes' claims of such a queue take turns and
each sees what the other took. A node whose queues have no such settings pays one read of
an empty result and claims as before.

Concurrency counts the tasks a queue has *held*, claimed (prefetched) and running alike: a
task is claimed before its handler starts, and only a claim can see the whole cluster under
a lock, so counting held tasks is what keeps running ones at or under the limit at every
instant. The rate limit's token bucket is spent by claims for the same reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from actorq.model import Task
from actorq.queues import QueueSettings, RateLimit, Tier, share

# The limit, the tokens in the bucket now, and the time they are counted at: the claim's, or
# the last spender's if that is later (a claim that waited for the queue's lock).
Bucket = tuple[RateLimit, float, float]


class ClaimTx(Protocol):
    """What a claim reads, within the batch's transaction (see ``batch.Tx``)."""

    async def ready(
        self, limit: int, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> list[Task]: ...

    async def claim_ready(
        self, limit: int, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> list[Task] | None:
        """``ready``, unless a served queue limits claims (None: then nothing was taken).
        The common claim, where no queue has limits, in one read."""

    async def ready_except(
        self,
        limit: int,
        queues: Sequence[str] | None,
        types: Sequence[str] | None,
        blocked: Sequence[str],
    ) -> list[Task]: ...

    async def queue_limits(
        self, queues: Sequence[str] | None
    ) -> list[tuple[QueueSettings, float | None, float | None]]:
        """Settings of the served queues that limit claims, locked, with their token
        buckets (tokens, when counted; None: full)."""

    async def held_counts(self, queues: Sequence[str]) -> dict[str, int]:
        """Tasks of these queues held by a worker (claimed or running), by queue."""

    async def spend(self, queue: str, tokens: float, at: float) -> None: ...


@attrs.define
class Allowance:
    """How many more tasks each limited queue may give this claim."""

    left: dict[str, float]
    paused: frozenset[str]
    buckets: dict[str, Bucket]


async def allowance(tx: ClaimTx, served: Sequence[str] | None, at: float) -> Allowance | None:
    """The limits of the served queues now; None when none of them has any (the fast path)."""
    rows = await tx.queue_limits(served)
    if not rows:
        return None
    capped = [s.name for s, _, _ in rows if s.concurrency is not None]
    held = await tx.held_counts(capped) if capped else {}
    left: dict[str, float] = {}
    buckets: dict[str, Bucket] = {}
    for settings, tokens, tokens_at in rows:
        room = math.inf
        if settings.paused:
            room = 0
        if settings.concurrency is not None:
            room = min(room, settings.concurrency - held.get(settings.name, 0))
        rate = settings.rate_limit
        if rate is not None:
            now = _refill(rate, tokens, tokens_at, at)
            as_of = at if tokens_at is None else max(at, tokens_at)
            buckets[settings.name] = (rate, now, as_of)
            room = min(room, math.floor(now))
        left[settings.name] = max(room, 0)
    paused = frozenset(s.name for s, _, _ in rows if s.paused)
    return Allowance(left, paused, buckets)


def _refill(rate: RateLimit, tokens: float | None, tokens_at: float | None, at: float) -> float:
    """Tokens in the bucket at ``at``: it holds at most ``rate.limit`` and refills at
    ``rate.limit`` per ``rate.period``. A clock behind the last spender's refills nothing."""
    if tokens is None or tokens_at is None:
        return float(rate.limit)
    return min(float(rate.limit), tokens + max(at - tokens_at, 0.0) * rate.per_second)


async def take(
    tx: ClaimTx,
    n: int,
    queues: Sequence[str] | None,
    types: Sequence[str] | None,
    allow: Allowance | None,
) -> list[Task]:
    """Up to ``n`` ready tasks, best first, none beyond a queue's allowance (which it
    lowers by what it takes)."""
    if allow is None:
        return await tx.ready(n, queues, types)
    taken: list[Task] = []
    ids: set[str] = set()
    blocked = {q for q, room in allow.left.items() if room <= 0}
    while len(taken) < n:
        # Rows this transaction locked already come back again: ask for that many more.
        want = n - len(taken)
        if blocked:
            rows = await tx.ready_except(want + len(ids), queues, types, sorted(blocked))
        else:
            rows = await tx.ready(want + len(ids), queues, types)
        for task in rows:
            if task.id in ids or task.queue in blocked or len(taken) == n:
                continue
            room = allow.left.get(task.queue)
            if room is not None:
                if room <= 0:
                    continue
                allow.left[task.queue] = room - 1
            taken.append(task)
            ids.add(task.id)
        spent = {q for q, room in allow.left.items() if room <= 0} - blocked
        if not spent:  # no queue ran out this round: what was not taken does not exist
            break
        blocked |= spent
    return taken


def in_tier_order(tiers: Sequence[Tier] | None) -> bool:
    """Whether a claim's ``--queues`` order its queues (several tiers, or a weighted group):
    such a claim reads each tier in turn (``by_tiers``), not one walk of them all."""
    return tiers is not None and (len(tiers) > 1 or len(tiers[0].queues) > 1)


async def claimable(
    tx: ClaimTx,
    n: int,
    queues: Sequence[str] | None,
    types: Sequence[str] | None,
    tiers: Sequence[Tier] | None,
    at: float,
    served: Mapping[str, int] | None = None,
    limited: bool = False,
) -> list[Task]:
    """The tasks a claim for ``n`` workers takes, in the order the workers get them;
    ``limited``: a served queue is known to limit claims (see ``Claim``)."""
    ordered = in_tier_order(tiers)
    if not (ordered or limited) and (fast := await tx.claim_ready(n, queues, types)) is not None:
        return fast
    allow = await allowance(tx, queues, at)
    if tiers is not None and ordered:
        taken = await by_tiers(tx, n, types, tiers, allow, served)
    else:
        taken = await take(tx, n, queues, types, allow)
    await spend(tx, allow, taken)
    return taken


async def by_tiers(
    tx: ClaimTx,
    n: int,
    types: Sequence[str] | None,
    tiers: Sequence[Tier],
    allow: Allowance | None,
    served: Mapping[str, int] | None,
) -> list[Task]:
    """Up to ``n`` ready tasks in ``--queues`` order: each tier in turn, a weighted group's
    queues sharing what is left in proportion to their weights."""
    out: list[Task] = []
    for tier in tiers:
        left = n - len(out)
        if left <= 0:
            break
        if len(tier.queues) == 1:
            out += await take(tx, left, tier.names, types, allow)
            continue
        pools = {q: await take(tx, left, (q,), types, allow) for q in tier.names}
        for q in share(tier.queues, {q: len(p) for q, p in pools.items()}, left, served):
            out.append(pools[q].pop(0))
    return out


async def spend(tx: ClaimTx, allow: Allowance | None, taken: Sequence[Task]) -> None:
    """Take one token per task claimed from the buckets of rate-limited queues. The bucket's
    time never goes back: a claim whose time is behind the last spender's (it waited for the
    lock) refilled nothing, and keeps the later time, else the next claim would refill the
    same interval twice."""
    if allow is None or not allow.buckets:
        return
    for queue, (_, tokens, as_of) in allow.buckets.items():
        k = sum(1 for t in taken if t.queue == queue)
        if k:
            await tx.spend(queue, tokens - k, as_of)
