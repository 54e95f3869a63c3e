"""Dispatcher: decides what runs next, and where.

Workers report free slots (one running task plus a small prefetch each); the Dispatcher claims
that many ready tasks in one journal operation and hands them out, so a worker that finishes
finds its next task waiting instead of waiting for a claim. It also keeps the leases of its
tasks alive (one batched heartbeat per interval), routes cancellations to the worker holding
the task, and, when the node drains, stops claiming and tells who is still busy. Through its
``QueueWatch`` it follows the queues' settings: workers hear which queues are paused, and a
resume or a raised limit wakes its claims at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import attrs

from actorq.actors.core import Actor, ActorError, ActorRef, ActorStopped, MailboxFull
from actorq.actors.health import Health, HealthReport
from actorq.actors.journal_writer import Committed, Write, write
from actorq.actors.prefetch import Prefetch
from actorq.actors.queue_watch import PausedQueues, QueuesChanged, QueuesRead, QueueWatch, Reader
from actorq.actors.ticker import Ticker
from actorq.errors import ActorqError
from actorq.journal.base import Append, Change, Claim, ExtendLeases
from actorq.lifecycle import Ceiling, rank
from actorq.model import Event, EventKind, Task, TaskState
from actorq.queues import Tier, WeightedTurns

# While a served queue has a limit, a claim that came back short is tried again this soon:
# capacity freed on another node (a task finished, tokens refilled) sends no notice.
LIMIT_RECHECK = 0.1

log = logging.getLogger("actorq.dispatcher")


@attrs.frozen
class WorkerReady:
    """From a worker: it (re)started and holds nothing."""

    worker_id: str
    ref: ActorRef


@attrs.frozen
class TaskDone:
    """From a worker: it is done with ``task_id`` (finished, cancelled or released), after
    running its handler for ``ran_seconds`` (None if the handler never ran)."""

    worker_id: str
    task_id: str
    ran_seconds: float | None = None


@attrs.frozen
class TaskSwapped:
    """From a worker: the journal gave its held ``released`` back to the queue and started
    the better ``started`` in its place (priority holds across prefetch)."""

    worker_id: str
    released: str
    started: str


@attrs.frozen
class RunTask:
    """To a worker: hold ``task`` and run it when free. ``ceiling`` is what the node knew of
    the best task still ready when it was claimed (see ``Ceiling``)."""

    task: Task
    ceiling: Ceiling = Ceiling()


@attrs.frozen
class HandOver:
    """To a worker: give one task you hold but have not started to worker ``to``."""

    to: str
    ref: ActorRef


@attrs.frozen
class HandedOver:
    """From a worker: ``task_id`` went from ``giver`` to ``to``; None if it had none left."""

    giver: str
    to: str
    task_id: str | None


@attrs.frozen
class CancelRunning:
    task_id: str


@attrs.frozen
class CancelTask:
    """To a worker: stop the handler of this task (it was cancelled)."""

    task_id: str


@attrs.frozen
class WorkAvailable:
    """Ready work may exist: a wake-up from a timer, another node, or the fallback poll."""


@attrs.frozen
class Heartbeat:
    pass


@attrs.frozen
class Claimed:
    """The answer to the Dispatcher's own claim (it never blocks its loop on the journal)."""

    workers: tuple[str, ...]
    tasks: tuple[Task, ...] = ()
    error: BaseException | None = None


@attrs.frozen
class Drain:
    """Stop claiming. Answer: a future that resolves when no task runs on this node."""


@attrs.frozen
class PauseNode:
    """An operator paused (or resumed) this node: no claims while paused, and the tasks the
    workers hold but have not started go back to the queue (running ones finish)."""

    paused: bool


@attrs.frozen
class HeldTasks:
    """Answer: the ids of the tasks this node holds (claimed or running), sorted."""


@attrs.frozen
class ReleaseHeld:
    """To a worker: give back the tasks you hold but have not started (the node paused)."""


@attrs.frozen
class DispatcherSettings:
    node: str
    lease_seconds: float
    heartbeat_seconds: float
    poll_seconds: float
    queues: tuple[str, ...] | None = None
    types: tuple[str, ...] | None = None  # the task types this node has handlers for
    write_timeout: float = 30.0  # the runtime's own
    prefetch: int = 1  # tasks a worker holds besides the one it runs
    burst: int = 8  # how many times more of them while tasks are far shorter than a claim
    tiers: tuple[Tier, ...] | None = None  # order and weights of ``queues`` (--queues)


class Dispatcher(Actor):
    def __init__(
        self,
        settings: DispatcherSettings,
        writer: ActorRef,
        clock: Callable[[], float],
        read_queues: Reader | None = None,
    ) -> None:
        self._s = settings
        self._writer = writer
        self._clock = clock
        self._read_queues = read_queues
        self._watch: QueueWatch | None = None  # made at start, when the ref exists
        self._recheck: asyncio.TimerHandle | None = None
        self._turns = WeightedTurns(settings.tiers)
        self._workers: dict[str, ActorRef] = {}
        self._held: dict[str, int] = {}  # worker id -> tasks it holds (running or in hand)
        self.prefetch = Prefetch(settings.prefetch, settings.burst)
        # task id -> id of the worker holding it (claimed or running): whose leases to renew
        self._running: dict[str, str] = {}
        self._maybe_work = True
        self._claim: asyncio.Task[None] | None = None  # at most one claim in flight
        self._claim_failures = 0  # claims failed in a row: a node that cannot claim is not ready
        # The best task still ready, as far as this node knows: held tasks that it cannot
        # outrank start without a look at the database. Work that became ready while a claim
        # was in flight is applied to what that claim tells once it answers.
        self._ceiling = Ceiling()
        self._news_in_claim: list[tuple[tuple[int, float] | None, bool]] = []
        self._draining = False
        self._paused = False  # by an operator (PauseNode)
        self._drained: asyncio.Future[None] | None = None
        self._tickers: list[Ticker] = []

    async def on_start(self) -> None:
        self._tickers = [
            Ticker(self.ref, Heartbeat(), self._s.heartbeat_seconds),
            Ticker(self.ref, WorkAvailable(), self._s.poll_seconds),
        ]
        watch = self._watch = QueueWatch(
            self._read_queues, self._s.queues, self.ref, self._s.write_timeout
        )
        if watch.active:
            self._tickers.append(Ticker(self.ref, QueuesChanged(), self._s.poll_seconds))
            watch.refresh()
        for ticker in self._tickers:
            ticker.start()

    async def on_stop(self) -> None:
        for ticker in self._tickers:
            await ticker.stop()
        if self._claim is not None:
            self._claim.cancel()
        if self._watch is not None:
            self._watch.stop()
        if self._recheck is not None:
            self._recheck.cancel()

    @property
    def _limited(self) -> bool:
        return self._watch is not None and self._watch.limited

    async def receive(self, message: object) -> object:
        match message:
            case WorkerReady() | TaskDone() | HandedOver() | TaskSwapped():
                self._worker_news(message)
            case Committed(changes, gap, control):
                if control:
                    await self._queue_news(QueuesChanged())
                await self._committed(changes, gap)
            case QueuesChanged() | QueuesRead():
                await self._queue_news(message)
            case WorkAvailable():
                # Another process's work, or the fallback poll: ready work of unknown rank.
                await self._news(None, unseen=True)
                self._maybe_work = True
                self._dispatch()
            case Claimed():
                await self._claimed(message)
            case Heartbeat():
                self._heartbeat()
            case CancelRunning(task_id):
                holder = self._running.get(task_id)
                if holder is not None:
                    await _tell(self._workers[holder], CancelTask(task_id))
            case Drain() | PauseNode() | HeldTasks():
                return await self._control(message)
            case Health():
                return self._health()
        return None

    async def _committed(self, changes: Sequence[Change], gap: bool) -> None:
        ready = [
            c.after
            for c in changes
            if c.after.state is TaskState.QUEUED and c.before is not TaskState.QUEUED
        ]
        served = [t for t in ready if self._serves(t)]
        if served or gap:  # work of queues or types this node does not serve wakes nothing
            await self._news(min(rank(t) for t in served) if served else None, unseen=gap)
            self._maybe_work = True
            self._dispatch()

    async def _queue_news(self, message: QueuesChanged | QueuesRead) -> None:
        watch = self._watch
        if watch is None:
            return
        if isinstance(message, QueuesChanged):
            watch.refresh()
            return
        paused_changed, changed = watch.update(message)
        if paused_changed:
            for ref in self._workers.values():
                await _tell(ref, PausedQueues(watch.paused))
        if changed:  # a resume or a raised limit: claim again now
            self._maybe_work = True
            self._dispatch()

    def _serves(self, task: Task) -> bool:
        s = self._s
        return (s.queues is None or task.queue in s.queues) and (
            s.types is None or task.type in s.types
        )

    async def _news(self, news: tuple[int, float] | None, *, unseen: bool) -> None:
        """Work became ready: tell the workers if it may outrank what they hold."""
        if self._claim is not None:
            self._news_in_claim.append((news, unseen))
        ceiling = self._ceiling.with_news(news, unseen)
        if ceiling != self._ceiling:
            self._ceiling = ceiling
            for ref in self._workers.values():
                await _tell(ref, ceiling)

    def _health(self) -> HealthReport:
        if self._claim_failures:
            return HealthReport(False, f"{self._claim_failures} claim(s) failed in a row")
        return HealthReport(True)

    def _worker_news(self, message: WorkerReady | TaskDone | HandedOver | TaskSwapped) -> None:
        match message:
            case TaskSwapped(worker_id, released, started):
                self._running.pop(released, None)
                self._running[started] = worker_id
                self._maybe_work = True  # the released task is ready again
            case HandedOver(giver, to, task_id):
                if task_id is None:  # it had started them all: undo the move
                    self._held[giver] += 1
                    self._held[to] -= 1
                elif task_id in self._running:
                    self._running[task_id] = to
                return
            case WorkerReady(worker_id, ref):
                self._worker_ready(worker_id, ref)
            case TaskDone(worker_id, task_id, ran_seconds):
                if self._running.pop(task_id, None) is not None:
                    self._held[worker_id] -= 1
                if self._limited:  # the slot it freed may let a limited queue give more
                    self._maybe_work = True
                if ran_seconds is not None:
                    self.prefetch.ran(ran_seconds)
        self._after_done()

    def _worker_ready(self, worker_id: str, ref: ActorRef) -> None:
        # A restarted worker holds nothing: what it held is left to its lease.
        for task_id, holder in list(self._running.items()):
            if holder == worker_id:
                del self._running[task_id]
        self._workers[worker_id] = ref
        self._held[worker_id] = 0
        if self._watch is not None and self._watch.paused:
            ref.tell_nowait(PausedQueues(self._watch.paused))

    def _after_done(self) -> None:
        self._check_drained()
        self._dispatch()
        self._rebalance()

    def _check_drained(self) -> None:
        # A claim still in flight counts as running: its tasks are ours once it commits, and
        # the workers must get them (and release them if they must stop) before they stop.
        idle = not self._running and self._claim is None
        if self._draining and idle and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _slots(self) -> list[str]:
        """Free slots, one entry each, emptiest workers first: the best tasks go to idle
        workers, then to those with least in hand."""
        hold = 1 + self.prefetch.now()
        order: list[str] = []
        for level in range(hold):
            order.extend(w for w, held in self._held.items() if held <= level)
        return order

    def _rebalance(self) -> None:
        """Move tasks waiting in a busy worker's hand to idle workers.

        Only when the queue looks empty (otherwise idle workers claim fresh work, and a busy
        worker's next task starts soon enough): a task prefetched behind a long one must not
        wait while other workers have nothing to do.
        """
        if self._maybe_work or self._draining:
            return
        idle = [w for w, held in self._held.items() if held == 0]
        for to in idle:
            donor = max(self._held, key=lambda w: self._held[w])
            if self._held[donor] < 2:  # nobody holds a task it is not running
                return
            try:
                self._workers[donor].tell_nowait(HandOver(to, self._workers[to]))
            except MailboxFull:
                return  # the donor is busy with messages; the next chance will do
            self._held[donor] -= 1  # as if moved; HandedOver confirms or undoes it
            self._held[to] += 1

    async def _control(self, message: Drain | PauseNode | HeldTasks) -> object:
        match message:
            case Drain():
                return self._drain()
            case PauseNode(paused):
                await self._pause(paused)
            case HeldTasks():
                return tuple(sorted(self._running))
        return None

    async def _pause(self, paused: bool) -> None:
        if paused == self._paused:
            return
        self._paused = paused
        log.info("node %s %s by an operator", self._s.node, "paused" if paused else "resumed")
        if paused:
            for ref in self._workers.values():
                await _tell(ref, ReleaseHeld())
        else:
            self._maybe_work = True
            self._dispatch()

    def _release(self, task: Task) -> None:
        """Put a claimed task back in its queue (``released``, fenced by the claim)."""
        event = Event(EventKind.RELEASED, task.id, self._clock(), self._s.node, {}, task.worker)
        try:
            self._writer.tell_nowait(Write(Append(event, task.worker, task.attempt)))
        except MailboxFull:  # its lease runs out and the reaper puts it back
            log.warning("journal writer is saturated; task %s is left to its lease", task.id)

    def _dispatch(self) -> None:
        if self._claim is not None or not self._maybe_work or self._draining or self._paused:
            return
        workers = self._slots()
        if not workers:
            return
        s = self._s
        served = dict(self._turns.served) if s.tiers is not None else None
        claim = Claim(workers, self._clock(), s.node, s.lease_seconds, s.queues, s.types, s.tiers,
                      served, self._limited)  # fmt: skip
        self._claim = asyncio.create_task(self._run_claim(claim), name="dispatcher:claim")

    async def _run_claim(self, claim: Claim) -> None:
        workers = tuple(claim.workers)
        try:
            began = time.monotonic()
            outcome = await write(self._writer, claim, timeout=self._s.write_timeout)
            self.prefetch.claimed(time.monotonic() - began)
            reply = Claimed(workers, tuple(outcome.unwrap()))
        except Exception as exc:  # noqa: BLE001 - any failure must reach the loop (see _claimed)
            reply = Claimed(workers, error=exc)
        await self.ref.tell(reply)

    async def _claimed(self, claimed: Claimed) -> None:
        self._claim = None
        if claimed.error is not None:
            self._news_in_claim.clear()
            self._ceiling = Ceiling()
            self._claim_failures += 1
            # A stopped writer (the node is stopping) or an outage is no bug: no crash for it.
            if not isinstance(claimed.error, ActorqError | ActorError | TimeoutError):
                # A bug, not an outage: crash, and let the supervisor start us afresh.
                raise claimed.error
            log.warning("claiming work failed; retrying at the next wake-up: %s", claimed.error)
            self._check_drained()
            return
        self._claim_failures = 0
        self._turns.took([t.queue for t in claimed.tasks])
        # Claims take the best first: nothing left ready ranks before the last task claimed
        # (or nothing is left at all, when the claim came back short).
        # With --queues order a rank says too little (an earlier queue's task of any priority
        # goes first, and weighted queues are not taken best first): the ceiling stays
        # unknown, so each held task is checked against what is ready when it starts.
        full = len(claimed.tasks) == len(claimed.workers)
        known = self._s.tiers is None
        ceiling = Ceiling(known, rank(claimed.tasks[-1]) if full and known else None)
        for news, unseen in self._news_in_claim:
            ceiling = ceiling.with_news(news, unseen)
        self._news_in_claim.clear()
        self._ceiling = ceiling
        for task in claimed.tasks:
            assert task.worker is not None
            ref = self._workers[task.worker]
            if self._paused:  # paused while the claim was in flight: give it back
                self._release(task)
                continue
            if not await _tell(ref, RunTask(task, ceiling)):
                self._release(task)  # its worker stopped meanwhile (the node is stopping)
                continue
            self._held[task.worker] += 1
            self._running[task.id] = task.worker
        # A full claim means more may be waiting; a short one means the queue is empty for now,
        # or that a limit held it back: then look again soon.
        self._maybe_work = len(claimed.tasks) == len(claimed.workers)
        if not self._maybe_work and self._limited and self._recheck is None:
            self._recheck = asyncio.get_running_loop().call_later(LIMIT_RECHECK, self._wake)
        self._after_done()

    def _wake(self) -> None:
        self._recheck = None
        with contextlib.suppress(MailboxFull):  # a full mailbox wakes the loop anyway
            self.ref.tell_nowait(WorkAvailable())

    def _heartbeat(self) -> None:
        if not self._running:
            return
        until = self._clock() + self._s.lease_seconds
        try:
            self._writer.tell_nowait(Write(ExtendLeases(sorted(self._running), until)))
        except MailboxFull:
            log.warning("journal writer is saturated; heartbeat skipped")

    def _drain(self) -> asyncio.Future[None]:
        self._draining = True
        self._drained = asyncio.get_running_loop().create_future()
        self._check_drained()
        return self._drained


async def _tell(worker: ActorRef, message: object) -> bool:
    """Tell a worker; False if it has stopped. Workers stop before the dispatcher as the node
    stops, each giving back what it held: a word meant for one then is nobody's loss."""
    try:
        await worker.tell(message)
    except ActorStopped:
        return False
    return True
