"""Presence: tells the cluster this node is here and what it serves, and knows what the others
serve.

The view always holds this node itself, first among equals: its defaults win for its own
types. On start it records the node (its task types with their defaults, its queues, its version and
concurrency) in the journal's nodes table, renews the record every heartbeat interval with the
tasks the node holds, and marks it gone on stop (gone rows stay listed ``GONE_KEPT_SECONDS``).
Each renewal answers what operators asked of the node (pause, drain) from any node of the
cluster: presence hands those orders to ``obey``. A ``Heartbeat`` told out of turn (a notice
that the orders changed) makes the node hear them at once. It
keeps a cached view of the live nodes (``Cluster``), read again at each heartbeat and, at most
once a second, when someone asks about a type the view does not know yet or wants it fresh.
A node is live while its last heartbeat is at most ``LIVENESS_INTERVALS`` (3) heartbeat
intervals old.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import attrs

from actorq.actors.core import Actor
from actorq.actors.ticker import Ticker
from actorq.errors import ActorqError
from actorq.journal.base import Journal
from actorq.nodes import (
    GONE_KEPT_SECONDS,
    Cluster,
    Node,
    Orders,
    liveness_horizon,
    waiting_for_handler,
)

log = logging.getLogger("actorq.presence")

REFRESH_SECONDS = 1.0  # asks read the nodes table at most this often


@attrs.frozen
class Heartbeat:
    """Renew this node's record and read the cluster's again."""


@attrs.frozen
class ClusterTypes:
    """Answer: the ``Cluster``. Read anew first (at most once a second) if ``fresh``, or if
    one of ``names`` is not in the cached view."""

    names: frozenset[str] = frozenset()
    fresh: bool = False


@attrs.frozen
class WaitingForHandler:
    """Answer: queued tasks by type that no live node serves (their queue included)."""


class Presence(Actor):
    def __init__(
        self,
        journal: Journal,
        me: Node,
        interval: float,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        held: Callable[[], Awaitable[tuple[str, ...]]] | None = None,
        obey: Callable[[Orders], Awaitable[None]] | None = None,
        *,
        fresh: bool = True,
    ) -> None:
        self._journal = journal
        self._held = held
        self._obey = obey
        self._fresh = fresh  # a new process: the first record clears operators' old wishes
        self._me = me
        self._interval = interval
        self._clock = clock
        self._monotonic = monotonic
        self._cluster = Cluster((me,), own=me.node)
        # Monotonic time of the last read someone asked for (heartbeats read on their own).
        self._asked_at: float | None = None
        # The last count of queued tasks: when, how long it is good for, and the counts.
        self._counted: tuple[float, float, dict[tuple[str, str], int]] | None = None
        self._ticker: Ticker | None = None

    async def on_start(self) -> None:
        await self._beat()
        self._ticker = Ticker(self.ref, Heartbeat(), self._interval)
        self._ticker.start()

    async def on_stop(self) -> None:
        if self._ticker is not None:
            await self._ticker.stop()
        try:
            await self._journal.leave_node(self._me.node, self._clock())
        except ActorqError as exc:  # the record ages out within the liveness horizon
            log.warning("could not mark node %s gone in the nodes table: %s", self._me.node, exc)

    async def receive(self, message: object) -> object:
        match message:
            case Heartbeat():
                await self._beat()
            case ClusterTypes(names, fresh):
                stale = fresh or not names <= self._cluster.types.keys()
                if stale:
                    await self._read_on_demand()
                return self._cluster
            case WaitingForHandler():
                await self._read_on_demand()
                return waiting_for_handler(await self._queued(), self._cluster)
        return None

    async def _read_on_demand(self) -> None:
        """Read the nodes again, unless an ask did less than a second ago: a flood of
        submissions of unknown types costs the database one read a second."""
        now = self._monotonic()
        if self._asked_at is None or now - self._asked_at >= REFRESH_SECONDS:
            self._asked_at = now
            await self._read()

    async def _queued(self) -> dict[tuple[str, str], int]:
        """Queued tasks by (queue, type), read again once the last read is a second old and
        20 of its own durations: the read walks every queued row (the tasks_ready index), so
        on a large backlog it stays a small share of the database however often /stats is
        asked."""
        began = self._monotonic()
        if self._counted is None or began - self._counted[0] >= self._counted[1]:
            queued = await self._journal.queued_by_type()
            cost = self._monotonic() - began
            self._counted = (began, max(REFRESH_SECONDS, 20 * cost), queued)
        return self._counted[2]

    async def _beat(self) -> None:
        """Renew the record, then read the cluster; a database away is not a crash (the
        next heartbeat tries again), but the view keeps what it knew."""
        now = self._clock()
        running = self._me.running
        if self._held is not None:
            try:
                running = await self._held()
            except Exception as exc:  # noqa: BLE001 - the dispatcher restarting: keep the last
                log.debug("could not read the held tasks: %r", exc)
        self._me = attrs.evolve(self._me, last_heartbeat=now, running=running)
        try:
            orders = await self._journal.register_node(self._me, start=self._fresh)
            self._fresh = False
            await self._read()
            await self._journal.forget_nodes(now - GONE_KEPT_SECONDS)
        except ActorqError as exc:
            log.warning("node heartbeat failed: %s", exc)
            return
        if self._obey is not None:
            await self._obey(orders)

    async def _read(self) -> None:
        horizon = liveness_horizon(self._clock(), self._interval)
        others = [n for n in await self._journal.live_nodes(horizon) if n.node != self._me.node]
        # This node is live as it answers, even if its own record is late or gone.
        self._cluster = Cluster((self._me, *others), own=self._me.node)
