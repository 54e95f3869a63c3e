"""StatsAggregator: folds committed events into live counters, latencies and Prometheus.

It is one of the live feed's subscribers (``actors/feed.py``): the feed hands it this node's
commits and, on a journal shared by several nodes (PostgreSQL), every node's events as its
follower tails them. On a journal of its own (SQLite) it starts from the projection's counts
and then follows the commits, so ``/stats`` and ``/metrics`` cost nothing per request. On a
shared journal the counts by state are also read again from the projection at a pace that
keeps the query a small fraction of one connection. Prometheus metrics stay this node's own
(Prometheus adds nodes up), except the task gauge, which is the projection's. The registry is
the runtime's, handed in.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import actorq.lifecycle as lifecycle
from actorq.actors.core import Actor, ActorStopped
from actorq.actors.journal_writer import Committed
from actorq.errors import ActorqError
from actorq.journal.base import Change, Journal, SharedJournal
from actorq.model import Event, EventKind, Task, TaskState, is_control

log = logging.getLogger("actorq.stats")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_FINAL = frozenset({EventKind.SUCCEEDED, EventKind.DEAD_LETTERED, EventKind.CANCELLED})
_REMOVED = {EventKind.EXPIRED: "expired", EventKind.PURGED: "purged"}


@attrs.frozen
class Snapshot:
    """Answer: a JSON-ready dict of the node's statistics."""


@attrs.frozen
class QueueFigures:
    """The queues as ``queues.describe`` shows them, read just now: the queue gauges follow."""

    queues: tuple[dict[str, Any], ...]


@attrs.frozen
class Following:
    """From the feed: it follows a shared journal from now on; the counts are read afresh."""


@attrs.frozen
class Tailed:
    """From the feed's follower: events every node committed, and the tasks they belong to."""

    events: list[Event]
    tasks: dict[str, Task]


@attrs.frozen
class ForeignCommitted:
    """From the runtime, on a journal of its own (SQLite): another process committed to it
    (a web app's enqueues beside this worker); the counts are read again soon."""


@attrs.frozen
class Counted:
    """From the recount: the projection's counts by (queue, state), read just now, and how
    many of its own changes the aggregator had folded as the read began (``folded``)."""

    counts: dict[tuple[str, TaskState], int]
    folded: int


@attrs.frozen
class _RecountFailed:
    error: BaseException


class Metrics:
    """The Prometheus view of the node, one registry per runtime (no global state)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self.tasks = Gauge("actorq_tasks", "Tasks by queue and state", ["queue", "state"],
                           registry=self.registry)  # fmt: skip
        self.events = Counter("actorq_events", "Journal events by kind", ["kind"],
                              registry=self.registry)  # fmt: skip
        self.pickup = Histogram("actorq_pickup_seconds", "From due to handler start",
                                buckets=_LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.firings = Counter(
            "actorq_schedule_firings", "Tasks enqueued by this node's firings of each schedule",
            ["schedule"], registry=self.registry,
        )  # fmt: skip
        self.dead_letters = Gauge("actorq_dead_letters", "Dead letters by queue", ["queue"],
                                  registry=self.registry)  # fmt: skip
        self.removed = Counter(
            "actorq_tasks_removed",
            "Tasks that left the projection (reason: expired by retention, purged dead letter)",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.runtime = Histogram("actorq_run_seconds", "Handler run time of finished attempts",
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        # The queues' own figures, for the whole cluster (read from the projection per scrape).
        self.queue_depth = Gauge("actorq_queue_depth", "Queued and scheduled tasks by queue",
                                 ["queue"], registry=self.registry)  # fmt: skip
        self.queue_paused = Gauge("actorq_queue_paused", "1 while the queue is paused",
                                  ["queue"], registry=self.registry)  # fmt: skip
        self.queue_saturation = Gauge(
            "actorq_queue_limit_saturation",
            "How full a queue's limit is (0 to 1): concurrency = held tasks / limit, "
            "max_depth = depth / limit; queues without that limit have no sample",
            ["queue", "limit"], registry=self.registry,
        )  # fmt: skip

    def set_queues(self, queues: Sequence[dict[str, Any]]) -> None:
        for gauge in (self.queue_depth, self.queue_paused, self.queue_saturation):
            gauge.clear()  # a queue gone since the last scrape leaves no stale sample
        for q in queues:
            name, tasks = q["name"], q["tasks"]
            depth = tasks["queued"] + tasks["scheduled"]
            self.queue_depth.labels(name).set(depth)
            self.queue_paused.labels(name).set(1 if q["paused"] else 0)
            if q["concurrency"]:
                held = tasks["claimed"] + tasks["running"]
                self.queue_saturation.labels(name, "concurrency").set(held / q["concurrency"])
            if q["max_depth"] is not None:
                full = depth / q["max_depth"] if q["max_depth"] else 1.0
                self.queue_saturation.labels(name, "max_depth").set(full)


class StatsAggregator(Actor):
    mailbox_size = 4096

    def __init__(
        self,
        journal: Journal,
        node: str,
        clock: Callable[[], float],
        metrics: Metrics,
        *,
        recount_seconds: float = 0.25,
    ) -> None:
        self._journal = journal
        self._node = node
        self._clock = clock
        self._shared = isinstance(journal, SharedJournal)
        self._recount_seconds = recount_seconds
        self.metrics = metrics
        self._counts: collections.Counter[tuple[str, TaskState]] = collections.Counter()
        self._kinds: collections.Counter[EventKind] = collections.Counter()
        self._finished: collections.deque[float] = collections.deque()  # times, last 60 s
        self._pickups: collections.deque[float] = collections.deque(maxlen=10_000)
        self._started = time.monotonic()
        self._last_seq = 0
        self._gauges: dict[tuple[str, TaskState], Any] = {}
        self._moved: set[tuple[str, TaskState]] = set()  # counts whose gauges are behind
        self._kind_counters: dict[EventKind, Any] = {}
        self._recounter: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # tailed events came: the counts are worth reading
        self._recount = False  # counts moved in ways the events alone do not tell
        self._folded = 0  # own changes folded into the counts so far

    async def on_start(self) -> None:
        self._set_counts(await self._journal.counts())

    async def on_stop(self) -> None:
        recounter, self._recounter = self._recounter, None
        if recounter is not None:
            recounter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recounter

    async def receive(self, message: object) -> object:
        match message:
            case Committed(changes):
                self._committed(changes)
            case Following():
                self._set_counts(await self._journal.counts())
                self._start_recounting()
            case ForeignCommitted():
                self._recount_soon()
            case Tailed(events, tasks):
                self._fold_tailed(events, tasks)
                self._changed.set()
            case Counted(counts, folded):
                self._set_counts(counts)
                if folded != self._folded:  # own changes came between the read and now:
                    self._recount_soon()  # the read may miss them; the next one will not
            case Snapshot():
                return self._snapshot()
            case QueueFigures(queues):
                self.metrics.set_queues(queues)
            case _RecountFailed(error):
                raise error  # the supervisor restarts us, and the recount with us
        return None

    # -- folding -------------------------------------------------------------------------

    def _committed(self, changes: Sequence[Change]) -> None:
        """This node's own commits: its metrics, and on its own journal everything else."""
        own = not self._shared  # else the feed's follower brings them with the other nodes'
        kinds: dict[EventKind, int] = {}
        for change in changes:
            e, after = change.event, change.after
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
            removed = lifecycle.removes(e)
            pickup = _pickup(e, after)
            self._observe(change, removed, pickup)
            if own:
                self._folded += 1
                self._fold(e, pickup)
                self._count(after.queue, change.before, None if removed else after.state)
        for kind, n in kinds.items():  # one increment per kind and batch, not per event
            counter = self._kind_counters.get(kind)
            if counter is None:
                counter = self._kind_counters[kind] = self.metrics.events.labels(kind.value)
            counter.inc(n)
        self._publish()

    def _observe(self, change: Change, removed: bool, pickup: float | None) -> None:
        """This node's Prometheus metrics, from one of its own commits."""
        e, after = change.event, change.after
        if e.kind is EventKind.SUBMITTED and "tick" in after.metadata:  # a schedule's task
            self.metrics.firings.labels(str(after.metadata.get("schedule"))).inc()
        if removed:
            self.metrics.removed.labels(_REMOVED[e.kind]).inc()
        if pickup is not None:
            self.metrics.pickup.observe(max(0.0, pickup))
        if after.state is TaskState.RUNNING or after.started_at is None:
            return
        if change.before is TaskState.RUNNING or lifecycle.carries_start(e):  # a run ended
            self.metrics.runtime.observe(max(0.0, e.at - after.started_at))

    def _fold(self, e: Event, pickup: float | None) -> None:
        """The statistics of ``/stats``, from an event and its pickup time (``_pickup``)."""
        self._last_seq = max(self._last_seq, e.seq)
        self._kinds[e.kind] += 1
        if pickup is not None and pickup >= 0:  # else rescheduled since: no longer known
            self._pickups.append(pickup)
        if e.kind in _FINAL:
            self._finished.append(e.at)

    def _fold_tailed(self, events: list[Event], tasks: dict[str, Task]) -> None:
        """Every node's events: statistics, and counts moved by each transition the event
        alone tells (the next read of the counts corrects the rest)."""
        for e in events:
            if is_control(e.task_id):
                continue  # a queue's or a schedule's event: no task counts move
            task = tasks.get(e.task_id)
            self._fold(e, None if task is None else _pickup(e, task))
            queue = None
            if task is not None:
                queue = task.queue
            elif e.kind is EventKind.SUBMITTED:
                queue = e.data.get("queue")
            transition = lifecycle.known_transition(e)
            if lifecycle.removes(e):  # the event names the queue and state it left
                queue = e.data.get("queue")
                self._count(str(queue), lifecycle.state_after(e), None)
            elif transition is None or queue is None:
                self._recount = True
            else:
                self._count(queue, *transition)
        self._publish()

    def _set_counts(self, counts: dict[tuple[str, TaskState], int]) -> None:
        for key in self._counts.keys() - counts.keys():
            self._set(key, 0)
        self._counts = collections.Counter(counts)
        for key, n in counts.items():
            self._set(key, n)

    def _count(self, queue: str, before: TaskState | None, after: TaskState | None) -> None:
        """A task of ``queue`` moved from ``before`` (None: it is new) to ``after`` (None: it
        left the projection)."""
        if before is not None:
            key = (queue, before)
            if self._counts[key] > 0:
                self._counts[key] -= 1
            else:  # a task these counts never saw (another process's): zero, read them again
                self._recount_soon()
            self._moved.add(key)
        if after is not None:
            key = (queue, after)
            self._counts[key] += 1
            self._moved.add(key)

    def _publish(self) -> None:
        """The gauges of the counts that moved: once per batch, not once per event."""
        for key in self._moved:
            self._set(key, self._counts[key])
        self._moved.clear()

    def _set(self, key: tuple[str, TaskState], n: int) -> None:
        self._gauge(key).set(n)
        if key[1] is TaskState.DEAD:
            self.metrics.dead_letters.labels(key[0]).set(n)

    def _gauge(self, key: tuple[str, TaskState]) -> Any:
        gauge = self._gauges.get(key)
        if gauge is None:  # labels() is a lookup with locks: once per series, not per event
            gauge = self._gauges[key] = self.metrics.tasks.labels(key[0], key[1].value)
        return gauge

    # -- reading the counts again (shared journal, or another process's commits) ----------

    def _start_recounting(self) -> None:
        if self._recounter is None:
            self._recounter = asyncio.create_task(
                self._recount_loop(), name=f"stats-recount:{self._node}"
            )

    def _recount_soon(self) -> None:
        self._changed.set()
        self._start_recounting()

    async def _recount_loop(self) -> None:
        """Read the counts again after tailed events, once the last read is a second old and
        20 of its own durations: on a large table it stays a small share of the database."""
        counted_at, count_cost = time.monotonic(), 0.0
        while True:
            try:
                await self._changed.wait()
                wait = max(1.0, 20 * count_cost) - (time.monotonic() - counted_at)
                if wait > 0:
                    await asyncio.sleep(wait)
                self._changed.clear()
                self._recount = False
                began, folded = time.monotonic(), self._folded
                counts = await self._journal.counts()
                counted_at = time.monotonic()
                count_cost = counted_at - began
                await self.ref.tell(Counted(counts, folded))
            except ActorqError as exc:  # the database is away: the next round tries again
                log.debug("cannot read the counts: %s", exc)
                await asyncio.sleep(min(5.0, 4 * self._recount_seconds))
            except ActorStopped:
                return
            except Exception as exc:  # noqa: BLE001 - a bug: the actor restarts, recount too
                with contextlib.suppress(ActorStopped):
                    self.ref.tell_nowait(_RecountFailed(exc))
                return

    # -- answers -------------------------------------------------------------------------

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
            "scope": "cluster" if self._shared else "node",
            "uptime_seconds": round(time.monotonic() - self._started, 3),
            "tasks": by_state,
            "queues": queues,
            "events": {k.value: n for k, n in sorted(self._kinds.items())},
            "finished_per_second_60s": round(len(self._finished) / 60, 3),
            "pickup_seconds": _percentiles(pickups),
            "last_seq": self._last_seq,
        }


def _pickup(e: Event, after: Task) -> float | None:
    """From due to handler start, for an event that starts a handler: ``started``, or an
    outcome that carries its start (a failure's task has a new run_at: not known there)."""
    if e.kind is EventKind.STARTED:
        return e.at - after.run_at
    if lifecycle.carries_start(e) and e.kind in _FINAL:
        return float(e.data["started_at"]) - after.run_at
    return None


def _percentiles(values: list[float]) -> dict[str, float | None]:
    def pick(q: float) -> float | None:
        return round(values[min(len(values) - 1, int(q * len(values)))], 6) if values else None

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}
