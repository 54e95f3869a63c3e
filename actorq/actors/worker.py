"""Worker: runs one task at a time and reports how it ended; WorkerSupervisor keeps N of them.

A worker may hold prefetched (``claimed``) tasks beside the running one, so it never waits for
a claim between two tasks. Before a handler starts, the worker journals the start: that is
when the attempt counts, and when a ready task of higher priority may take the held one's
turn (see ``journal.base.Start``).

The handler runs in its own asyncio task, owned by the worker, so the worker's loop stays free
to hear a cancellation while the handler runs. A handler that raises or passes its timeout is
a failed attempt, never a crash of the worker.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import time
import traceback
from collections.abc import Callable
from typing import Any

import attrs

import actorq.lifecycle as lifecycle
from actorq.actors.core import Actor, ActorRef, ChildSpec, Restart, Supervisor
from actorq.actors.dispatcher import (
    CancelTask,
    HandedOver,
    HandOver,
    RunTask,
    TaskDone,
    TaskSwapped,
    WorkerReady,
)
from actorq.actors.journal_writer import Write, write
from actorq.errors import ActorqError
from actorq.journal.base import Append, Start, Started
from actorq.lifecycle import RetryPolicy
from actorq.model import Event, EventKind, Task
from actorq.tasks import Registry, TaskContext

log = logging.getLogger("actorq.worker")
_MAX_TRACEBACK = 4000


@attrs.frozen
class Succeeded:
    result: Any


@attrs.frozen
class Failed:
    error: str
    traceback: str | None = None
    timed_out: bool = False


@attrs.frozen
class Cancelled:
    """The handler was stopped because its task was cancelled (already journaled)."""


@attrs.frozen
class NotStarted:
    """The held task could not start: cancelled or reaped meanwhile, or the journal refused.
    Nothing to journal: a task still held comes back when its lease expires, attempts
    intact."""

    reason: str


@attrs.frozen
class TaskBegan:
    """From the worker's own job: the journal started ``task`` in place of held ``held_id``
    (the same task, or a better one that took its turn)."""

    held_id: str
    started: Started


_MOVED_KEPT = 64  # tasks handed over lately, whose cancellation may still come here


@attrs.frozen
class HandlerDone:
    task_id: str
    outcome: Succeeded | Failed | Cancelled | NotStarted
    seconds: float  # how long the handler ran


@attrs.frozen
class WorkerDeps:
    node: str
    registry: Registry
    writer: ActorRef
    dispatcher: ActorRef
    clock: Callable[[], float]
    rng: random.Random
    lease_seconds: float = 30.0
    write_timeout: float = 30.0
    queues: tuple[str, ...] | None = None  # the node's claim filters, for the priority check
    types: tuple[str, ...] | None = None
    default_retry: RetryPolicy = RetryPolicy()


class Worker(Actor):
    mailbox_size = 16

    def __init__(self, worker_id: str, deps: WorkerDeps) -> None:
        self.worker_id = worker_id
        self._d = deps
        self._task: Task | None = None
        self._job: asyncio.Task[None] | None = None
        self._next: collections.deque[Task] = collections.deque()
        self._moved: collections.OrderedDict[str, ActorRef] = collections.OrderedDict()

    async def on_start(self) -> None:
        await self._d.dispatcher.tell(WorkerReady(self.worker_id, self.ref))

    async def on_stop(self) -> None:
        # Stopping with tasks in hand: give them back so the next start runs them without
        # waiting for their lease, and without counting this attempt.
        held = list(self._next)
        if self._task is not None and self._job is not None:
            self._job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._job, timeout=1.0)
            held.insert(0, self._task)
        for task in held:
            released = Event(
                EventKind.RELEASED, task.id, self._d.clock(), self._d.node, {}, self.worker_id
            )
            await self._d.writer.tell(Write(Append(released, task.worker, task.attempt)))
        self._task = self._job = None
        self._next.clear()

    async def receive(self, message: object) -> object:
        match message:
            case RunTask(task):
                self._next.append(task)
                self._start_next()
            case CancelTask(task_id):
                await self._cancel(task_id)
            case HandOver(to, ref):
                # The newest task in hand goes: the others have waited longer for this worker.
                given = self._next.pop() if self._next else None
                if given is not None:
                    await ref.tell(RunTask(given))
                    self._moved[given.id] = ref
                    if len(self._moved) > _MOVED_KEPT:
                        self._moved.popitem(last=False)
                handed = HandedOver(self.worker_id, to, None if given is None else given.id)
                await self._d.dispatcher.tell(handed)
            case TaskBegan(held_id, started):
                await self._began(held_id, started)
            case HandlerDone(task_id, outcome, seconds):
                await self._finish(task_id, outcome, seconds)
                self._start_next()
        return None

    async def _began(self, held_id: str, started: Started) -> None:
        if self._task is None or self._task.id != held_id:
            return
        self._task = started.task  # its attempt and worker fence the outcome
        if started.released is not None:
            swapped = TaskSwapped(self.worker_id, started.released, started.task.id)
            await self._d.dispatcher.tell(swapped)

    def _start_next(self) -> None:
        if self._task is None and self._next:
            # The best of what it holds: a later claim may have brought a higher priority.
            task = self._task = min(self._next, key=lambda t: (-t.priority, t.run_at))
            self._next.remove(task)
            self._job = asyncio.create_task(self._execute(task), name=f"task:{task.id}")

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

    async def _execute(self, held: Task) -> None:
        outcome: Succeeded | Failed | Cancelled | NotStarted
        task_id = held.id
        began = time.monotonic()
        try:
            started = await self._start(held)
            if isinstance(started, NotStarted):
                outcome = started
            else:
                task_id = started.task.id
                await self.ref.tell(TaskBegan(held.id, started))
                began = time.monotonic()
                outcome = await self._call(started.task)
        except asyncio.CancelledError:
            outcome = Cancelled()
        await self.ref.tell(HandlerDone(task_id, outcome, time.monotonic() - began))

    async def _start(self, held: Task) -> Started | NotStarted:
        d = self._d
        assert held.worker is not None
        op = Start(held.id, held.worker, self.worker_id, d.clock(), d.node, d.lease_seconds,
                   d.queues, d.types)  # fmt: skip
        try:
            started: Started = (await write(d.writer, op, timeout=d.write_timeout)).unwrap()
        except (ActorqError, TimeoutError) as exc:
            return NotStarted(str(exc) or type(exc).__name__)
        return started

    async def _call(self, task: Task) -> Succeeded | Failed:
        try:
            task_type = self._d.registry.get(task.type)
            ctx = TaskContext(task, self._d.node)
            async with asyncio.timeout(task.timeout):
                result = await task_type.call(task.payload, ctx)
            json.dumps(result)  # the result is journaled: refuse what JSON cannot carry
            return Succeeded(result)
        except TimeoutError:
            return Failed(f"timed out after {task.timeout}s", timed_out=True)
        except ActorqError as exc:
            return Failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - a handler's error is a failed attempt
            tb = "".join(traceback.format_exception(exc))[-_MAX_TRACEBACK:]
            return Failed(f"{type(exc).__name__}: {exc}", tb)

    async def _finish(
        self, task_id: str, outcome: Succeeded | Failed | Cancelled | NotStarted, seconds: float
    ) -> None:
        task = self._task
        if task is None or task.id != task_id:
            return
        self._task = self._job = None
        if isinstance(outcome, NotStarted):
            log.info("task %s did not start: %s", task_id, outcome.reason)
            await self._d.dispatcher.tell(TaskDone(self.worker_id, task_id))
            return
        event = self._event(task, outcome)
        if event is not None:
            # Fenced by the claim (its worker and attempt), which a handed-over task keeps.
            await self._d.writer.tell(Write(Append(event, task.worker, task.attempt)))
        await self._d.dispatcher.tell(TaskDone(self.worker_id, task_id, seconds))

    def _event(self, task: Task, outcome: Succeeded | Failed | Cancelled) -> Event | None:
        now, node = self._d.clock(), self._d.node
        match outcome:
            case Succeeded(result):
                data = {"result": result}
                return Event(EventKind.SUCCEEDED, task.id, now, node, data, self.worker_id)
            case Failed(error, tb, timed_out):
                policy = self._retry_policy(task)
                event = lifecycle.decide_failure(
                    task,
                    error=error,
                    timed_out=timed_out,
                    at=now,
                    node=node,
                    policy=policy,
                    rng=self._d.rng,
                )
                if tb:
                    event = attrs.evolve(event, data={**event.data, "traceback": tb})
                return attrs.evolve(event, worker=self.worker_id)
        return None  # cancelled: the cancellation itself was journaled

    def _retry_policy(self, task: Task) -> RetryPolicy:
        if task.type in self._d.registry:
            return self._d.registry.get(task.type).retry
        return self._d.default_retry


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
