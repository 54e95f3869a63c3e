"""Runtime: the composition root. It opens the journal, builds the actor tree, and offers the
operations that the HTTP API and the ``App`` call on a running node.

Only this module wires concrete parts together; actors know each other by ref only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import Any

import attrs
from prometheus_client import generate_latest

import actorq.loop as event_loop
import actorq.nodes as node_registry
from actorq.actors.core import ActorError, ActorSystem, ChildSpec, Strategy, Supervisor
from actorq.actors.dispatcher import (
    CancelRunning,
    Dispatcher,
    DispatcherSettings,
    Drain,
    HeldTasks,
    PauseNode,
    WorkAvailable,
)
from actorq.actors.feed import BUFFER, Count, Follow, LiveFeed, Subscription
from actorq.actors.health import Health, HealthReport
from actorq.actors.journal_writer import JournalWriter, Subscriber, write
from actorq.actors.lock_reaper import LockReaper
from actorq.actors.presence import ClusterTypes, Presence, WaitingForHandler
from actorq.actors.presence import Heartbeat as PresenceBeat
from actorq.actors.queue_watch import QueuesChanged
from actorq.actors.retention import Overrides, RetentionSweeper, Sweep
from actorq.actors.retry_timer import RetryTimer
from actorq.actors.scheduler import Rearm, Scheduler
from actorq.actors.sealer import Sealer, seal_all
from actorq.actors.stats import ForeignCommitted, Metrics, QueueFigures, Snapshot, StatsAggregator
from actorq.actors.worker import WorkerDeps, worker_supervisor
from actorq.auth import stamped
from actorq.config import Config
from actorq.dead_letters import settle
from actorq.errors import ActorqError, InvalidTransition, Overloaded, QueueNotFound
from actorq.journal import journal_from_url, redact_url
from actorq.journal.base import (
    Append,
    ConfigureQueue,
    DeadAction,
    Journal,
    Notice,
    Op,
    Outcome,
    PurgeQueue,
    Selection,
    SharedJournal,
    Submit,
)
from actorq.journal.seals import key_bytes
from actorq.model import (
    HELD_STATES,
    Event,
    EventKind,
    NewTask,
    Page,
    Task,
    TaskFilter,
    TaskState,
)
from actorq.nodes import Catalog, Cluster, Layered, Node, Orders, ServedType
from actorq.queues import describe, queue_policies
from actorq.retry import RetryDefaults, RetryPolicy
from actorq.schedules import Schedules
from actorq.streams import Stream
from actorq.tasks import Registry

log = logging.getLogger("actorq.runtime")


def _version() -> str:
    try:
        return importlib.metadata.version("actorq")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


WRITER, STATS, DISPATCHER, WORKERS, TIMER, REAPER = (
    "journal_writer", "stats", "dispatcher", "workers", "retry_timer", "lock_reaper",
)  # fmt: skip
PRESENCE = "presence"
FEED = "feed"
SCHEDULER = "scheduler"
SWEEPER = "retention"
SEALER = "sealer"
# The actors whose ``Health()`` answer decides readiness: they claim and write for the node.
HEALTH_CHECKED = (WRITER, DISPATCHER)


@attrs.frozen
class Readiness:
    """Whether this node can claim and write now; if not, why (for an operator to read)."""

    ok: bool
    reasons: tuple[str, ...] = ()
    journal_seq: int | None = None


class Runtime:
    """One actorq node: journal, actors, and the operations on them."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        *,
        journal: Journal | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        write_timeout: float = 30.0,
        retention_overrides: Overrides | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.journal = journal or journal_from_url(config.database_url)
        self.clock = clock
        self._rng = rng or random.Random()
        self._write_timeout = write_timeout
        # Per-queue retention ({queue: seconds}), read by the sweeper at each sweep: by
        # default the queues' own settings (PATCH /api/v1/queues/{name} {"retention": s}).
        self._retention_overrides = retention_overrides or self._queue_retention
        # The queues' retry policies, read at the first submission after any queue change
        # this node hears of (its own, another node's notice, another process's commit).
        self._queue_retry: dict[str, RetryPolicy] | None = None
        self._queue_changes = 0
        self._queue_retry_read: dict[str, RetryPolicy] = {}  # the last read, kept or not
        self.metrics_view = Metrics()  # the node's Prometheus registry, kept across restarts
        self._root = self._build_tree()
        self.system = ActorSystem(self._root, name=f"actorq:{config.node}")
        self._started = False
        self._born = clock()
        self._fresh = True  # the first node record of this process clears old orders
        self._paused = False  # by an operator, as this node last obeyed
        self._drain: asyncio.Task[None] | None = None  # an operator's drain, once asked
        self._drained = asyncio.Event()  # that drain is done: the process may exit
        self.schedules = Schedules(self.journal, self._write_schedule, config.node, clock)

    # -- the actor tree ------------------------------------------------------------------

    def _build_tree(self) -> Supervisor:
        c = self.config
        root_ref = self._ref

        def make_stats() -> StatsAggregator:
            return StatsAggregator(self.journal, c.node, self.clock, self.metrics_view)

        tiers = c.queue_tiers
        ordered = tiers is not None and (len(tiers) > 1 or len(tiers[0].queues) > 1)
        settings = DispatcherSettings(
            node=c.node,
            lease_seconds=c.lease_seconds,
            heartbeat_seconds=c.heartbeat_interval,
            poll_seconds=c.poll_seconds,
            queues=c.served_queues,
            tiers=tiers if ordered else None,
            types=tuple(self.registry.names()),
            prefetch=c.prefetch,
            write_timeout=self._write_timeout,
        )

        # Factories run at (re)start, when the refs they look up exist.
        def subscribers() -> list[Subscriber]:
            return [
                Subscriber(root_ref(FEED)),
                Subscriber(root_ref(DISPATCHER), lossy=True),
                Subscriber(root_ref(TIMER), lossy=True),
            ]

        def deps() -> WorkerDeps:
            return WorkerDeps(
                node=c.node,
                registry=self.registry,
                writer=root_ref(WRITER),
                dispatcher=root_ref(DISPATCHER),
                clock=self.clock,
                rng=self._rng,
                peek=lambda queues: self.journal.peek_ready(queues, settings.types),
                lease_seconds=c.lease_seconds,
                write_timeout=self._write_timeout,
                queues=settings.queues,
                types=settings.types,
                tiers=settings.tiers,
                max_result_bytes=c.max_result_bytes,
                default_retry=c.retry_policy,
            )

        reap_every = max(0.05, min(c.lease_seconds / 4, 5.0))
        # rest_for_one, in this order: a restarted writer restarts everything that writes;
        # a restarted dispatcher restarts the workers it alone knows (they hand back what
        # they held); the statistics, timer and reaper restart cheaply.
        specs = [
            ChildSpec(WRITER, lambda: JournalWriter(self.journal, subscribers(), c.max_batch)),
            ChildSpec(
                DISPATCHER,
                lambda: Dispatcher(
                    settings, root_ref(WRITER), self.clock, self.journal.queue_settings
                ),
            ),
            ChildSpec(
                WORKERS,
                lambda: worker_supervisor(deps(), c.concurrency),
                shutdown_timeout=c.shutdown_grace + 5,
            ),
            ChildSpec(FEED, lambda: LiveFeed(self.journal, c.node, lambda: root_ref(STATS))),
            ChildSpec(STATS, make_stats),
            ChildSpec(
                TIMER,
                lambda: RetryTimer(
                    self.journal,
                    root_ref(WRITER),
                    c.node,
                    self.clock,
                    c.poll_seconds,
                    self._write_timeout,
                ),
            ),
            ChildSpec(
                REAPER,
                lambda: LockReaper(
                    root_ref(WRITER), c.node, self.clock, reap_every, self._write_timeout
                ),
            ),
            ChildSpec(
                SCHEDULER,
                lambda: Scheduler(
                    self.journal,
                    root_ref(WRITER),
                    c.node,
                    self.clock,
                    c.poll_seconds,
                    self._write_timeout,
                ),
            ),
            *self._sweeper_spec(),
            ChildSpec(
                SEALER,
                lambda: Sealer(
                    self.journal, c.node, self.clock, c.seal_seconds, key_bytes(c.journal_key)
                ),
            ),
            # Last: it tells the cluster we serve only once everything that serves is up, and
            # stops first, so a stopping node stops being offered new types of work first.
            ChildSpec(
                PRESENCE,
                lambda: Presence(
                    self.journal,
                    self._me(),
                    c.heartbeat_interval,
                    self.clock,
                    time.monotonic,
                    self._held,
                    self._obey,
                    fresh=self._take_fresh(),
                ),
            ),
        ]
        return Supervisor(specs, strategy=Strategy.REST_FOR_ONE, max_restarts=5, within=10.0)

    def _sweeper_spec(self) -> list[ChildSpec]:
        """The retention sweeper. With a node retention of 0 (finished tasks are kept for
        ever) it still sweeps the queues that have a period of their own."""
        c = self.config
        return [
            ChildSpec(
                SWEEPER,
                lambda: RetentionSweeper(
                    self._ref(WRITER), c.node, self.clock, c.retention, self._write_timeout,
                    self._retention_overrides,
                ),
            )
        ]  # fmt: skip

    async def _queue_retention(self) -> dict[str, float]:
        """The queues with a retention period of their own (the others take the node's)."""
        settings = await self.journal.queue_settings()
        return {q.name: q.retention for q in settings if q.retention is not None}

    def _me(self) -> Node:
        """This node's record in the nodes table: what it serves and where it runs."""
        types = {n: ServedType.of(n, self.registry.get(n)) for n in self.registry.names()}
        now = self.clock()
        return Node(self.config.node, socket.gethostname(), os.getpid(), self._born, now, types,
                    self.config.served_queues, _version(), self.config.concurrency)  # fmt: skip

    def _take_fresh(self) -> bool:
        fresh, self._fresh = self._fresh, False
        return fresh

    async def _held(self) -> tuple[str, ...]:
        held: tuple[str, ...] = await self._ref(DISPATCHER).ask(HeldTasks(), timeout=5.0)
        return held

    async def _obey(self, orders: Orders) -> None:
        """What operators asked of this node, as its heartbeat (or a notice) read it: pause
        or resume taking work; drain: take no more, and once what runs is done, stop."""
        paused = orders.paused or orders.drain
        if paused != self._paused:
            self._paused = paused
            await self._ref(DISPATCHER).tell(PauseNode(paused))
        if orders.drain and self._drain is None and self._started:
            log.info("node %s drains: running tasks finish, then it stops", self.config.node)
            drained = await self._ref(DISPATCHER).ask(Drain(), timeout=5.0)
            self._drain = asyncio.create_task(self._await_drain(drained), name="actorq:drain")

    async def _await_drain(self, drained: asyncio.Future[None]) -> None:
        await drained
        log.info("node %s drained", self.config.node)
        self._drained.set()

    def _ref(self, name: str) -> Any:
        return self._root.child(name)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.journal.open()
        try:
            await self.system.start()
            await self.journal.subscribe(self._on_notice)
            for declared in self.registry.schedules():  # the App's @periodic
                await self.schedules.declare(declared)
        except BaseException:
            await self.system.stop()
            await self.journal.close()
            raise
        self._started = True
        log.info(
            "node %s started: %d workers on %s, %s event loop", self.config.node,
            self.config.concurrency, redact_url(self.config.database_url), event_loop.running(),
        )  # fmt: skip

    async def stop(self) -> None:
        """Stop claiming, let running tasks finish within the grace period, then shut down.

        Tasks still running after the grace period are released back to the queue.
        """
        if not self._started:
            return
        self._started = False
        if self._drain is not None and not self._drain.done():
            self._drain.cancel()
        with contextlib.suppress(ActorError, TimeoutError):
            drained = await self._ref(DISPATCHER).ask(Drain(), timeout=5.0)
            try:
                await asyncio.wait_for(asyncio.shield(drained), self.config.shutdown_grace)
            except TimeoutError:
                log.warning("grace period over: releasing tasks still running")
        await self.system.stop()
        # Every actor has stopped writing: seal what they wrote last, so a stopped journal
        # is fully sealed.
        with contextlib.suppress(ActorqError):
            await seal_all(self.journal, key_bytes(self.config.journal_key), self.config.node,
                           self.clock)  # fmt: skip
        await self.journal.close()
        log.info("node %s stopped", self.config.node)

    async def wait(self) -> None:
        """Return when the actor system stops (a root failure included), or when an
        operator's drain is done (the node should stop now)."""
        waits = [asyncio.ensure_future(self.system.wait()),
                 asyncio.ensure_future(self._drained.wait())]  # fmt: skip
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    @property
    def drained(self) -> bool:
        """Whether an operator's drain finished (the node stops cleanly because of it)."""
        return self._drained.is_set()

    async def readiness(self, timeout: float = 2.0) -> Readiness:
        """Whether this node can do its work: started, its actor system alive, the journal
        answering, and every actor of ``HEALTH_CHECKED`` reporting healthy. Each check is
        bounded by ``timeout`` (they run at once); one that does not answer in time fails."""
        if self.system.failed is not None:
            return Readiness(False, ("the actor system failed",))
        if not self._started:
            return Readiness(False, ("the node is not running",))
        actors = asyncio.gather(*(self._health(name, timeout) for name in HEALTH_CHECKED))
        (seq, journal_trouble), troubles = await asyncio.gather(self._journal_head(timeout), actors)
        reasons = tuple(r for r in (journal_trouble, *troubles) if r is not None)
        return Readiness(not reasons, reasons, seq)

    async def _journal_head(self, timeout: float) -> tuple[int | None, str | None]:
        """The journal's head seq, or None and why it could not be read."""
        try:
            async with asyncio.timeout(timeout):
                return (await self.journal.head()).journal_seq, None
        except TimeoutError:
            return None, "the journal does not answer in time"
        except Exception as exc:  # noqa: BLE001 - a probe answers, whatever went wrong
            log.warning("readiness: the journal failed: %r", exc)
            return None, "the journal does not answer"

    async def _health(self, name: str, timeout: float) -> str | None:
        """None if actor ``name`` reports healthy, else why not."""
        try:
            report: HealthReport = await self._ref(name).ask(Health(), timeout=timeout)
        except TimeoutError:
            return f"{name} does not answer in time"
        except ActorError:
            return f"{name} is stopped"
        except Exception as exc:  # noqa: BLE001 - a probe answers, whatever went wrong
            log.warning("readiness: %s failed to answer: %r", name, exc)
            return f"{name} failed to answer"
        return None if report.ok else f"{name}: {report.reason or 'not healthy'}"

    def _on_notice(self, notice: Notice) -> None:
        if notice.kind == "ready":
            if not isinstance(self.journal, SharedJournal):
                # SQLite: another process committed something, maybe a queue's settings, and
                # tasks the counts do not know of
                self._queues_changed()
                with contextlib.suppress(ActorError):
                    self._ref(STATS).tell_nowait(ForeignCommitted())
                with contextlib.suppress(ActorError):  # live subscribers see their events too
                    self._ref(FEED).tell_nowait(ForeignCommitted())
            self._ref(DISPATCHER).tell_nowait(WorkAvailable())
        elif notice.kind == "cancel" and notice.task_id:
            self._ref(DISPATCHER).tell_nowait(CancelRunning(notice.task_id))
        elif notice.kind == "queue":
            self._queues_changed()
            self._retention_changed()
        elif notice.kind == "node" and notice.node == self.config.node:
            # An operator's wish for this node: its presence reads it now, not at the beat.
            self._ref(PRESENCE).tell_nowait(PresenceBeat())

    def _queues_changed(self) -> None:
        self._forget_queue_retry()
        self._ref(DISPATCHER).tell_nowait(QueuesChanged())

    def _retention_changed(self) -> None:
        """A queue's retention may have changed: the sweeper reads it (and its pace) now."""
        with contextlib.suppress(ActorError):
            self._ref(SWEEPER).tell_nowait(Sweep())

    def _forget_queue_retry(self) -> None:
        self._queue_retry = None
        self._queue_changes += 1

    # -- operations ----------------------------------------------------------------------

    async def _write(self, op: Any) -> Any:
        op = stamped(op)
        try:
            outcome = await write(self._ref(WRITER), op, timeout=self._write_timeout)
        except TimeoutError:
            raise Overloaded("the journal did not accept the write in time") from None
        return outcome.unwrap()

    async def _write_schedule(self, op: Any) -> Any:
        """A schedule operation; the Scheduler hears of it at once (not at its next refresh)."""
        result = await self._write(op)
        with contextlib.suppress(ActorError):
            self._ref(SCHEDULER).tell_nowait(Rearm())
        return result

    async def submit(self, tasks: Sequence[NewTask]) -> list[Task]:
        """Create tasks; returns once their ``submitted`` events are durable. A task whose
        retry policy was not chosen yet gets it here, so its submitted event records it."""
        if any(t.retry is None for t in tasks):
            defaults = await self.retry_defaults()
            tasks = [t if t.retry is not None else self._with_retry(t, defaults) for t in tasks]
        result: list[Task] = await self._write(Submit(tasks, self.clock(), self.config.node))
        return result

    async def retry_defaults(self) -> RetryDefaults:
        """What a submission's retry policy falls back on: the queues' policies, then the
        node's default (``Config.retry``); a task type's policy comes between the two
        (``RetryDefaults.choose``)."""
        policies = self._queue_retry
        if policies is None:
            changes = self._queue_changes
            try:
                policies = queue_policies(await self.journal.queue_settings())
            except ActorqError as exc:
                # The database is away: the last policies read will do, for the submission
                # goes through the writer, which tells the outage (and reports it).
                log.info("queue retry policies unreadable, taking the last known: %s", exc)
                return RetryDefaults(node=self.config.retry_policy, queues=self._queue_retry_read)
            self._queue_retry_read = policies
            if changes == self._queue_changes:  # no change was heard while reading
                self._queue_retry = policies
        return RetryDefaults(node=self.config.retry_policy, queues=policies)

    def _with_retry(self, task: NewTask, defaults: RetryDefaults) -> NewTask:
        known = self.registry.get(task.type).retry if task.type in self.registry else None
        return attrs.evolve(task, retry=defaults.choose(None, task.queue, known))

    async def cancel(self, task_id: str, reason: str = "cancelled") -> Task:
        task = await self.journal.get(task_id)
        if task.state.finished:
            raise InvalidTransition(f"task {task_id} is already {task.state}")
        event = Event(EventKind.CANCELLED, task_id, self.clock(), self.config.node,
                      {"reason": reason})  # fmt: skip
        cancelled: Task = await self._write(Append(event))
        if task.state in HELD_STATES or cancelled.worker:
            with contextlib.suppress(ActorError):
                await self._ref(DISPATCHER).tell(CancelRunning(task_id))
        return cancelled

    async def retry(self, task_id: str, by: str | None = None) -> Task:
        """Queue a dead or cancelled task again; ``by`` (who asked) goes into its history."""
        data = {} if by is None else {"by": by}
        event = Event(EventKind.RETRIED, task_id, self.clock(), self.config.node, data)
        task: Task = await self._write(Append(event))
        return task

    async def dead_letters(
        self, queue: str | None, type_: str | None, limit: int, cursor: str | None
    ) -> Page:
        query = TaskFilter(TaskState.DEAD, queue, type_)
        return await self.journal.list_tasks(query, limit, cursor)

    async def settle_dead(self, action: DeadAction, selection: Selection, by: str) -> int:
        """Retry or purge the dead letters of ``selection`` in bounded chunks; how many."""

        async def run(op: Op) -> Outcome:
            try:
                return await write(self._ref(WRITER), stamped(op), timeout=self._write_timeout)
            except TimeoutError:
                raise Overloaded("the journal did not accept the write in time") from None

        return await settle(run, action, selection, clock=self.clock, node=self.config.node,
                            by=by)  # fmt: skip

    async def get(self, task_id: str) -> Task:
        return await self.journal.get(task_id)

    # -- nodes ---------------------------------------------------------------------------

    async def nodes(self) -> list[dict[str, Any]]:
        interval = self.config.heartbeat_interval
        return await node_registry.list_nodes(self.journal, self.clock(), interval)

    async def node(self, node: str) -> dict[str, Any]:
        return await node_registry.get_node(self.journal, node, self.clock(),
                                    self.config.heartbeat_interval)  # fmt: skip

    async def command_node(self, node: str, command: str) -> dict[str, Any]:
        """Pause, resume or drain ``node``, wherever it runs. This node obeys before this
        returns; another hears at once by notice on PostgreSQL, or at its next heartbeat."""
        now, interval = self.clock(), self.config.heartbeat_interval
        described = await node_registry.command_node(self.journal, node, command, now, interval)
        if node == self.config.node:  # obeyed before the answer
            await self._ref(PRESENCE).ask(PresenceBeat(), timeout=self._write_timeout)
        return described

    # -- queues --------------------------------------------------------------------------

    async def queues(self) -> list[dict[str, Any]]:
        """Every queue a task names or an operator configured, with its settings and counts."""
        return await describe(self.journal, self.clock())

    async def queue(self, name: str) -> dict[str, Any]:
        found = await describe(self.journal, self.clock(), name)
        if not found:
            raise QueueNotFound(name)
        return found[0]

    async def configure_queue(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change queue ``name``'s settings (as ``queues.parse_patch`` checked them); every
        node hears of it at once (this one through its writer, others by notice)."""
        await self._write(ConfigureQueue(name, changes, self.clock(), self.config.node))
        self._forget_queue_retry()
        if "retention" in changes:
            self._retention_changed()
        return await self.queue(name)

    async def purge_queue(self, name: str, states: Sequence[TaskState]) -> int:
        """Cancel every task of ``name`` in ``states``; the number cancelled."""
        reason = f"queue {name!r} purged"
        total = 0
        while True:
            op = PurgeQueue(name, states, self.clock(), self.config.node, reason)
            cancelled: list[Task] = await self._write(op)
            total += len(cancelled)
            for task in cancelled:
                if task.worker is not None:  # it was held or running: tell its worker
                    with contextlib.suppress(ActorError):
                        await self._ref(DISPATCHER).tell(CancelRunning(task.id))
            if len(cancelled) < op.limit:
                return total

    async def list_tasks(self, query: TaskFilter, limit: int, cursor: str | None) -> Page:
        return await self.journal.list_tasks(query, limit, cursor)

    async def history(self, task_id: str) -> list[Event]:
        return await self.journal.history(task_id)

    async def stats(self) -> dict[str, Any]:
        await self._ref(FEED).ask(Follow(), timeout=5.0)  # a shared journal: follow it now
        snapshot: dict[str, Any] = await self._ref(STATS).ask(Snapshot(), timeout=5.0)
        waiting = await self._ref(PRESENCE).ask(WaitingForHandler(), timeout=5.0)
        return {**snapshot, "waiting_for_handler": waiting}

    async def catalog(self, names: Iterable[str] = ()) -> Catalog:
        """The task types a submission here may name: this node's own, then those of the
        live nodes of the cluster. ``names`` are those about to be resolved: one this node
        does not know makes the cluster's view be read again (at most once a second)."""
        unknown = frozenset(n for n in names if n not in self.registry)
        if not unknown:
            return self.registry
        return Layered(self.registry, await self.cluster(unknown))

    async def cluster(self, names: Collection[str] = ()) -> Cluster:
        """The live nodes and the types they serve, this node included."""
        ask = ClusterTypes(frozenset(names), fresh=not names)
        cluster: Cluster = await self._ref(PRESENCE).ask(ask, timeout=5.0)
        return cluster

    async def metrics(self) -> bytes:
        """This node's metrics in Prometheus' text format."""
        # On a shared journal the task gauge follows the journal once someone asks.
        await self._ref(FEED).ask(Follow(), timeout=5.0)
        await self._ref(STATS).ask(QueueFigures(tuple(await self.queues())), timeout=5.0)
        return bytes(generate_latest(self.metrics_view.registry))

    @contextlib.asynccontextmanager
    async def live_events(self, size: int = BUFFER) -> AsyncIterator[Subscription]:
        """A subscription that receives every committed task event while the context is
        open (``await sub.get()``); past ``size`` unread ones it ends with ``lagged``."""
        async with self.stream(None, size=size) as stream:
            yield stream.subscription

    def stream(self, since: int | None, *, size: int | None = None) -> Stream:
        """Task events after seq ``since`` from the journal, then live ones (``since`` None:
        live ones only), with a buffer of ``size`` (default ``Config.stream_buffer``) events;
        see ``actorq.streams``."""
        size = self.config.stream_buffer if size is None else size
        return Stream(self.journal, self._ref(FEED), since, size=size,
                      ask_timeout=self._write_timeout)  # fmt: skip

    async def live_subscribers(self) -> int:
        """How many live subscribers the feed has now."""
        count: int = await self._ref(FEED).ask(Count(), timeout=5.0)
        return count

    async def wait_for(
        self, task_id: str, states: Collection[TaskState] | None = None, *, timeout: float
    ) -> Task:
        """Wait until the task is in one of ``states`` (default: any finished state)."""
        wanted = frozenset(states or (TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED))
        async with asyncio.timeout(timeout):
            while True:  # subscribe again if the feed dropped us for lagging behind
                async with self.live_events() as feed:
                    task = await self.journal.get(task_id)
                    while task.state not in wanted:
                        item = await feed.get()
                        if item.get("kind") == "lagged":
                            break
                        # The item tells the state the event left; read the task once it
                        # is one of those awaited.
                        if item.get("task_id") == task_id and item.get("state") in wanted:
                            task = await self.journal.get(task_id)
                    else:
                        return task
