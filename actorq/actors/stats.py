"""StatsAggregator: folds committed events into live counters, latencies and a live feed.

It starts from the projection's counts and then follows the writer's commit notices, so
``/stats`` and ``/metrics`` cost nothing per request. It also fans events out to live
subscribers (SSE, WebSocket, ``wait_for``); a subscriber too slow to keep up loses events
and is told so, rather than slowing the queue down.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from actorq.actors.core import Actor
from actorq.actors.journal_writer import Committed
from actorq.journal.base import Change, Journal
from actorq.model import EventKind, TaskState

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_FINAL = frozenset({EventKind.SUCCEEDED, EventKind.DEAD_LETTERED, EventKind.CANCELLED})


@attrs.frozen
class Subscribe:
    queue: asyncio.Queue[dict[str, Any]]


@attrs.frozen
class Unsubscribe:
    queue: asyncio.Queue[dict[str, Any]]


@attrs.frozen
class Snapshot:
    """Answer: a JSON-ready dict of the node's statistics."""


def change_to_json(change: Change) -> dict[str, Any]:
    e, t = change.event, change.after
    return {
        "seq": e.seq,
        "at": e.at,
        "kind": e.kind.value,
        "task_id": e.task_id,
        "state": t.state.value,
        "queue": t.queue,
        "type": t.type,
        "node": e.node,
        "worker": e.worker,
    }


class Metrics:
    """The Prometheus view of the node, one registry per runtime (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tasks = Gauge("actorq_tasks", "Tasks by queue and state", ["queue", "state"],
                           registry=self.registry)  # fmt: skip
        self.events = Counter("actorq_events", "Journal events by kind", ["kind"],
                              registry=self.registry)  # fmt: skip
        self.pickup = Histogram("actorq_pickup_seconds", "From due to claimed",
                                buckets=_LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.runtime = Histogram("actorq_run_seconds", "Handler run time of finished attempts",
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)  # fmt: skip


class StatsAggregator(Actor):
    mailbox_size = 4096

    def __init__(self, journal: Journal, node: str, clock: Callable[[], float]) -> None:
        self._journal = journal
        self._node = node
        self._clock = clock
        self.metrics = Metrics()
        self._counts: collections.Counter[tuple[str, TaskState]] = collections.Counter()
        self._kinds: collections.Counter[EventKind] = collections.Counter()
        self._finished: collections.deque[float] = collections.deque()  # times, last 60 s
        self._pickups: collections.deque[float] = collections.deque(maxlen=10_000)
        self._subscribers: dict[asyncio.Queue[dict[str, Any]], bool] = {}
        self._started = time.monotonic()
        self._last_seq = 0
        self._gauges: dict[tuple[str, TaskState], Any] = {}
        self._kind_counters: dict[EventKind, Any] = {}

    async def on_start(self) -> None:
        self._counts = collections.Counter(await self._journal.counts())
        for (queue, state), n in self._counts.items():
            self.metrics.tasks.labels(queue, state.value).set(n)

    async def receive(self, message: object) -> object:
        match message:
            case Committed(changes):
                for change in changes:
                    self._fold(change)
                self._fan_out(changes)
            case Subscribe(queue):
                self._subscribers[queue] = True
            case Unsubscribe(queue):
                self._subscribers.pop(queue, None)
            case Snapshot():
                return self._snapshot()
        return None

    def _fold(self, change: Change) -> None:
        e, after = change.event, change.after
        self._last_seq = max(self._last_seq, e.seq)
        self._kinds[e.kind] += 1
        counter = self._kind_counters.get(e.kind)
        if counter is None:
            counter = self._kind_counters[e.kind] = self.metrics.events.labels(e.kind.value)
        counter.inc()
        if change.before is not None:
            self._count(after.queue, change.before, -1)
        self._count(after.queue, after.state, +1)
        if e.kind is EventKind.CLAIMED:
            pickup = max(0.0, e.at - after.run_at)
            self._pickups.append(pickup)
            self.metrics.pickup.observe(pickup)
        elif change.before is TaskState.RUNNING and after.started_at is not None:
            self.metrics.runtime.observe(max(0.0, e.at - after.started_at))
        if e.kind in _FINAL:
            self._finished.append(e.at)

    def _count(self, queue: str, state: TaskState, delta: int) -> None:
        key = (queue, state)
        self._counts[key] += delta
        gauge = self._gauges.get(key)
        if gauge is None:  # labels() is a lookup with locks: once per series, not per event
            gauge = self._gauges[key] = self.metrics.tasks.labels(queue, state.value)
        gauge.set(self._counts[key])

    def _fan_out(self, changes: Any) -> None:
        if not self._subscribers:
            return
        items = [change_to_json(c) for c in changes]
        for queue in list(self._subscribers):
            for item in items:
                try:
                    queue.put_nowait(item)
                except asyncio.QueueFull:
                    self._subscribers.pop(queue)
                    _lagged(queue)
                    break

    def _snapshot(self) -> dict[str, Any]:
        now = self._clock()
        while self._finished and self._finished[0] < now - 60:
            self._finished.popleft()
        by_state = {s.value: 0 for s in TaskState}
        queues: dict[str, dict[str, int]] = {}
        for (queue, state), n in self._counts.items():
            by_state[state.value] += n
            queues.setdefault(queue, {s.value: 0 for s in TaskState})[state.value] = n
        pickups = sorted(self._pickups)
        return {
            "node": self._node,
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "tasks": by_state,
            "queues": queues,
            "events": {k.value: n for k, n in sorted(self._kinds.items())},
            "finished_per_second_60s": round(len(self._finished) / 60, 3),
            "pickup_seconds": _percentiles(pickups),
            "last_seq": self._last_seq,
        }


def _lagged(queue: asyncio.Queue[dict[str, Any]]) -> None:
    """Make room for one last item telling the subscriber it was dropped."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait({"kind": "lagged"})


def _percentiles(values: list[float]) -> dict[str, float | None]:
    def pick(q: float) -> float | None:
        return round(values[min(len(values) - 1, int(q * len(values)))], 6) if values else None

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}
