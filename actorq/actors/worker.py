"""Worker: runs one task at a time and reports how it ended; WorkerSupervisor keeps N of them.

A worker may hold prefetched (``claimed``) tasks beside the running one, so it never waits for
a claim between two tasks. When it takes the next one, a ready task that outranks it may take
its turn (the dispatcher's ``Ceiling`` says when one might; ``journal.base.Start`` decides).
A held task of a queue the dispatcher says is paused starts only through ``Start`` too, which
gives it back to the queue while the pause lasts.
The handler's start is when the attempt counts; it is journaled beside the run, or carried by
the outcome of a run shorter than ``START_WINDOW``.

The handler runs in its own asyncio task, owned by the worker, so the worker's loop stays free
to hear a cancellation while the handler runs. A handler that raises or passes its timeout is
a failed attempt, never a crash of the worker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

import attrs

import actorq.lifecycle as lifecycle
from actorq.actors.core import (
    Actor,
    ActorError,
    ActorRef,
    ActorStopped,
    ChildSpec,
    MailboxFull,
    Restart,
    Supervisor,
)
from actorq.actors.dispatcher import (
    CancelTask,
    HandedOver,
    HandOver,
    ReleaseHeld,
    RunTask,
    TaskDone,
    TaskSwapped,
    WorkerReady,
)
from actorq.actors.handler import (
    Cancelled,
    Ended,
    NotStarted,
    call,
    outcome_event,
)
from actorq.actors.journal_writer import Write, write
from actorq.actors.progress import ProgressWriter
from actorq.actors.queue_watch import PausedQueues
from actorq.errors import ActorqError
from actorq.journal.base import Append, Outcome, Start, Started
from actorq.lifecycle import Ceiling
from actorq.model import Event, EventKind, Task
from actorq.queues import Tier, tiers_up_to
from actorq.retry import RetryPolicy
from actorq.tasks import Registry

log = logging.getLogger("actorq.worker")


@attrs.frozen
class TaskBegan:
    """From the worker's own job: the journal's decision on held ``held_id``: None to start
    it, or the better task it started in its place."""

    held_id: str
    started: Started | None


# A handler's start is journaled this long after it began; if it ends sooner, its outcome
# event carries the start (``lifecycle.carries_start``): the short tasks that are most of them
# cost no event more than when a claim was the start. A node killed within that window gives
# the attempt back (at-least-once either way).
START_WINDOW = 0.01


@attrs.define
class _Run:
    """One run of a handler: its start while not yet written, and why the journal refused
    it, if it did."""

    start: Append | None = None
    began: float = 0.0  # loop time its handler started
    timer: asyncio.TimerHandle | None = None  # a retry of a start the writer had no room for
    refused: str | None = None
    progress: ProgressWriter | None = None

    def take_start(self) -> Append | None:
        """The start, if still unwritten; the caller writes it (alone or with the outcome)."""
        if self.timer is not None:
            self.timer.cancel()
        start, self.start = self.start, None
        return start


_MOVED_KEPT = 64  # tasks handed over lately, whose cancellation may still come here


@attrs.frozen
class HandlerDone:
    task_id: str
    outcome: Ended | NotStarted
    seconds: float  # how long the handler ran


@attrs.frozen
class WorkerDeps:
    node: str
    registry: Registry
    writer: ActorRef
    dispatcher: ActorRef
    clock: Callable[[], float]
    rng: random.Random
    # The best ready task of these queues (None: all the node serves) of the node's types,
    # read without a lock (Journal.peek_ready).
    peek: Callable[[Sequence[str] | None], Awaitable[Task | None]] | None = None
    lease_seconds: float = 30.0
    write_timeout: float = 30.0
    queues: tuple[str, ...] | None = None  # the node's claim filters, for the priority check
    types: tuple[str, ...] | None = None
    tiers: tuple[Tier, ...] | None = None  # their --queues order, when it has one
    default_retry: RetryPolicy = RetryPolicy()
    max_result_bytes: int | None = None  # a larger result dead-letters its task (handler.call)


class Worker(Actor):
    mailbox_size = 16

    def __init__(self, worker_id: str, deps: WorkerDeps) -> None:
        self.worker_id = worker_id
        self._d = deps
        self._task: Task | None = None
        self._job: asyncio.Task[None] | None = None
        self._next: collections.deque[Task] = collections.deque()
        self._moved: collections.OrderedDict[str, ActorRef] = collections.OrderedDict()
        self._done_later: list[TaskDone] = []
        self._run: _Run | None = None  # the handler run of ``_task``, once it began
        # One timer a worker, not one a run: it looks at whichever run is current when it
        # fires (most runs end well within START_WINDOW, and a timer each costs the loop).
        self._start_due: asyncio.TimerHandle | None = None
        self._ceiling = Ceiling()  # the best ready task, as the dispatcher last told it
        self._paused: frozenset[str] = frozenset()  # as the dispatcher last told it

    async def on_start(self) -> None:
        await self._d.dispatcher.tell(WorkerReady(self.worker_id, self.ref))

    async def on_stop(self) -> None:
        # Stopping with tasks in hand: give them back so the next start runs them without
        # waiting for their lease, and without counting this attempt.
        fences: list[tuple[str, str | None, int | None]] = [
            (t.id, t.worker, t.attempt) for t in self._next
        ]
        task = self._task
        if task is not None and self._job is not None:
            self._job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._job, timeout=1.0)
            start = None if self._run is None else self._run.take_start()
            if start is not None:  # its start was never written: it is still held
                fences.insert(0, (task.id, start.worker, start.attempt))
            else:
                fences.insert(0, (task.id, task.worker, task.attempt))
        for task_id, worker, attempt in fences:
            released = Event(
                EventKind.RELEASED, task_id, self._d.clock(), self._d.node, {}, self.worker_id
            )
            await self._d.writer.tell(Write(Append(released, worker, attempt)))
        self._task = self._job = self._run = None
        self._next.clear()
        with contextlib.suppress(ActorError):
            await self._report_done()

    async def receive(self, message: object) -> object:
        match message:
            case Ceiling():
                self._ceiling = message
            case PausedQueues(names):
                self._paused = names
            case RunTask(task, ceiling):
                self._ceiling = ceiling
                self._next.append(task)
                await self._start_next()
            case CancelTask(task_id):
                await self._cancel(task_id)
            case ReleaseHeld():
                await self._release_held()
            case HandOver(to, ref):
                # The newest task in hand goes: the others have waited longer for this worker.
                given = self._next.pop() if self._next else None
                if given is not None:
                    await ref.tell(RunTask(given, self._ceiling))
                    self._moved[given.id] = ref
                    if len(self._moved) > _MOVED_KEPT:
                        self._moved.popitem(last=False)
                handed = HandedOver(self.worker_id, to, None if given is None else given.id)
                await self._d.dispatcher.tell(handed)
            case TaskBegan(held_id, started):
                await self._began(held_id, started)
            case HandlerDone(task_id, outcome, seconds):
                await self._finish(task_id, outcome, seconds)
                await self._start_next()
        return None

    async def _start_next(self) -> None:
        if self._task is not None or not self._next:
            return
        # The best of what it holds: a later claim may have brought a higher priority.
        held = self._task = min(self._next, key=lifecycle.rank)
        self._next.remove(held)
        paused = held.queue in self._paused
        if paused or self._ceiling.may_outrank(held):
            # Better work may be ready, or its queue is paused: the journal decides.
            self._job = asyncio.create_task(self._decide(held, paused), name=f"start:{held.id}")
        else:
            await self._begin(held)

    async def _begin(self, held: Task) -> None:
        """Start the handler of ``held`` now. Its ``started`` event is written beside it,
        not waited for: if the journal refuses it (the task was cancelled or reaped
        meanwhile), the handler is stopped, for the task is no longer this worker's."""
        d = self._d
        now = d.clock()
        data = {"lease_expires_at": now + d.lease_seconds}
        event = Event(EventKind.STARTED, held.id, now, d.node, data, self.worker_id)
        task = self._task = lifecycle.apply(held, event)  # its attempt and worker fence the outcome
        loop = asyncio.get_running_loop()
        run = self._run = _Run(Append(event, held.worker, held.attempt), loop.time())
        self._job = asyncio.create_task(self._execute(task, run), name=f"task:{task.id}")
        if self._start_due is None:
            self._start_due = loop.call_later(START_WINDOW, self._check_start)
        await self._report_done()

    def _check_start(self) -> None:
        """The start timer: journal the current run's start once it has run START_WINDOW."""
        self._start_due = None
        run, job = self._run, self._job
        if run is None or job is None or run.start is None:
            return
        loop = asyncio.get_running_loop()
        left = run.began + START_WINDOW - loop.time()
        if left > 0:  # a run that began after the timer was set
            self._start_due = loop.call_later(left, self._check_start)
            return
        self._write_start(run, job)

    def _write_start(self, run: _Run, job: asyncio.Task[None]) -> None:
        """The handler runs on: journal its start now (a loop callback of this worker's)."""
        if job.done():  # its outcome is on the way, and takes the start along
            return
        start = run.take_start()
        if start is None:
            return
        confirmed: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        try:
            self._d.writer.tell_nowait(Write(start, confirmed))
        except MailboxFull:  # the writer is swamped: try again shortly
            run.start = start
            run.timer = asyncio.get_running_loop().call_later(
                START_WINDOW, self._write_start, run, job
            )
            return
        except ActorStopped:
            return
        confirmed.add_done_callback(functools.partial(_stop_if_refused, run, job))

    async def _began(self, held_id: str, started: Started | None) -> None:
        """The journal decided (see ``_decide``): start ``held``, or the better task it
        started in its place."""
        if self._task is None or self._task.id != held_id:
            return
        if started is None:
            await self._begin(self._task)
            return
        if started.task is None:  # its queue is paused: the journal gave it back
            self._task = self._job = None
            await self._report_done()
            await self._d.dispatcher.tell(TaskDone(self.worker_id, held_id))
            await self._start_next()
            return
        task = self._task = started.task
        if started.released is not None:
            swapped = TaskSwapped(self.worker_id, started.released, task.id)
            await self._d.dispatcher.tell(swapped)
        self._job = asyncio.create_task(self._execute(task, _Run()), name=f"task:{task.id}")
        await self._report_done()

    async def _better_ready(self, held: Task) -> bool:
        """Whether a ready task (unlocked reads) ought to start before ``held``: any of a
        queue ``--queues`` serves before held's, or one of held's own tier that ranks before."""
        peek, tiers = self._d.peek, self._d.tiers
        assert peek is not None
        if tiers is None:
            best = await peek(self._d.queues)
            return best is not None and lifecycle.ranks_before(best, held)
        before, own = tiers_up_to(tiers, held.queue)
        if before and await peek(before) is not None:
            return True
        best = await peek(own)
        return best is not None and lifecycle.ranks_before(best, held)

    async def _decide(self, held: Task, paused: bool) -> None:
        """One unlocked read: is a ready task better than ``held``? Only then (or if its queue
        is paused) does the journal's atomic ``Start`` run, which may give ``held`` back."""
        d = self._d
        assert held.worker is not None
        started: Started | None = None
        try:
            better = False
            if not paused and d.peek is not None:
                better = await asyncio.wait_for(self._better_ready(held), d.write_timeout)
            if paused or better:
                op = Start(held.id, held.worker, self.worker_id, d.clock(), d.node,
                           d.lease_seconds, d.queues, d.types, d.tiers)  # fmt: skip
                started = (await write(d.writer, op, timeout=d.write_timeout)).unwrap()
        except (ActorqError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            await self.ref.tell(HandlerDone(held.id, NotStarted(reason), 0.0))
            return
        except asyncio.CancelledError:
            await self.ref.tell(HandlerDone(held.id, Cancelled(), 0.0))
            return
        await self.ref.tell(TaskBegan(held.id, started))

    async def _cancel(self, task_id: str) -> None:
        if self._task is not None and self._task.id == task_id and self._job:
            self._job.cancel()  # HandlerDone(Cancelled) follows
            return
        moved = self._moved.pop(task_id, None)
        if moved is not None:  # handed over before the dispatcher heard: pass it on
            await moved.tell(CancelTask(task_id))
            return
        for task in list(self._next):
            if task.id == task_id:  # prefetched, never started: drop it
                self._next.remove(task)
                await self._d.dispatcher.tell(TaskDone(self.worker_id, task_id))

    async def _release_held(self) -> None:
        """Give back the tasks held but not started: ``released`` (fenced by the claim) puts
        each back in its queue without counting an attempt, for another node to take."""
        while self._next:
            task = self._next.popleft()
            released = Event(
                EventKind.RELEASED, task.id, self._d.clock(), self._d.node, {}, self.worker_id
            )
            await self._d.writer.tell(Write(Append(released, task.worker, task.attempt)))
            await self._d.dispatcher.tell(TaskDone(self.worker_id, task.id))

    async def _execute(self, task: Task, run: _Run) -> None:
        outcome: Ended | NotStarted
        began = time.monotonic()
        d = self._d
        report = None
        if task.type not in d.registry or d.registry.get(task.type).wants_context:
            # Only a handler that takes its context can report progress: no writer otherwise.
            progress = run.progress = ProgressWriter(
                task, d.node, self.worker_id, functools.partial(self._write_progress, run, task),
                d.clock, time.monotonic,
            )  # fmt: skip
            report = progress.report
        try:
            outcome = await call(d.registry, task, d.node, d.max_result_bytes, report)
        except asyncio.CancelledError:
            outcome = NotStarted(run.refused) if run.refused else Cancelled()
        await self.ref.tell(HandlerDone(task.id, outcome, time.monotonic() - began))

    def _write_progress(self, run: _Run, task: Task, event: Event) -> None:
        """Journal a progress event of ``task``, fenced by its start (written first if it was
        not yet). Best effort: a swamped or stopped writer drops it."""
        if run.start is not None and self._job is not None:
            self._write_start(run, self._job)
        with contextlib.suppress(MailboxFull, ActorStopped):
            self._d.writer.tell_nowait(Write(Append(event, task.worker, task.attempt)))

    async def _finish(self, task_id: str, outcome: Ended | NotStarted, seconds: float) -> None:
        task = self._task
        if task is None or task.id != task_id:
            return
        if self._run is not None and self._run.progress is not None:
            # Its last report goes in before its outcome (and its start before that report);
            # a cancelled or refused run's is dropped: the task is no longer running.
            self._run.progress.close(write=not isinstance(outcome, Cancelled | NotStarted))
        self._task = self._job = None
        run, self._run = self._run, None
        start = None if run is None else run.take_start()
        if isinstance(outcome, NotStarted):
            log.info("task %s did not start: %s", task_id, outcome.reason)
            await self._report_done()
            await self._d.dispatcher.tell(TaskDone(self.worker_id, task_id))
            return
        d = self._d
        policy = task.retry or self._fallback_retry(task)
        # Its start not written yet: the outcome carries it (one event for both), fenced as
        # the start is.
        started_at = None if start is None else start.event.at
        event = outcome_event(task, outcome, d.clock(), d.node, self.worker_id, policy, d.rng,
                              started_at)  # fmt: skip
        if event is not None and start is not None:
            await self._d.writer.tell(Write(Append(event, start.worker, start.attempt)))
        elif event is not None:
            # Fenced by the start (its worker and attempt).
            await self._d.writer.tell(Write(Append(event, task.worker, task.attempt)))
        done = TaskDone(self.worker_id, task_id, seconds)
        if self._next:
            # Said once the next held task's start is decided: the claim this frees a slot
            # for must not take a better ready task from under that decision.
            self._done_later.append(done)
        else:
            await self._d.dispatcher.tell(done)

    def _fallback_retry(self, task: Task) -> RetryPolicy:
        """For a task submitted before policies were recorded at submission: its type's
        policy, else the node's."""
        known = self._d.registry.get(task.type) if task.type in self._d.registry else None
        return (None if known is None else known.retry) or self._d.default_retry

    async def _report_done(self) -> None:
        while self._done_later:
            await self._d.dispatcher.tell(self._done_later.pop(0))


def worker_supervisor(deps: WorkerDeps, concurrency: int) -> Supervisor:
    """One-for-one over ``concurrency`` workers named ``<node>/w<i>``."""
    specs = []
    for i in range(concurrency):
        worker_id = f"{deps.node}/w{i}"
        specs.append(
            ChildSpec(
                name=worker_id,
                factory=lambda wid=worker_id: Worker(wid, deps),  # type: ignore[misc]
                restart=Restart.PERMANENT,
                shutdown_timeout=5.0,
            )
        )
    return Supervisor(specs, max_restarts=max(3, concurrency), within=5.0)


def _refusal(confirmed: asyncio.Future[Outcome]) -> str | None:
    """Why the journal refused a start, once it answered; None while it has not, or if not."""
    if not confirmed.done():
        return None
    if confirmed.cancelled():
        return "the start was not written"
    error = confirmed.exception() or confirmed.result().error
    return None if error is None else str(error) or type(error).__name__


def _stop_if_refused(
    run: _Run, job: asyncio.Task[None], confirmed: asyncio.Future[Outcome]
) -> None:
    reason = _refusal(confirmed)
    if reason is not None and not job.done():
        run.refused = reason
        job.cancel()
