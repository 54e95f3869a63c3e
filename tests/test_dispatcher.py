"""The Dispatcher between its writer and its workers, played here by plain actors, so that a
test decides when a claim commits and when a task ends."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from nodes import Gates, make_registry, node_config
from procs import until

from actorq.actors.core import Actor, ActorRef, ActorSystem, ChildSpec, Strategy, Supervisor
from actorq.actors.dispatcher import (
    CancelTask,
    Dispatcher,
    DispatcherSettings,
    Drain,
    HandOver,
    Prefetch,
    RunTask,
    TaskDone,
    WorkAvailable,
    WorkerReady,
)
from actorq.actors.health import Health
from actorq.actors.journal_writer import Committed, Write
from actorq.actors.worker import Worker, WorkerDeps
from actorq.errors import StorageUnavailable
from actorq.journal.base import Change, Claim, Outcome, Start, Started
from actorq.model import Event, EventKind, NewTask, Task, TaskState
from actorq.runtime import Runtime


class HeldWrites(Actor):
    """A writer that holds every write until the test answers it."""

    def __init__(self, writes: asyncio.Queue[Write]) -> None:
        self.writes = writes

    async def receive(self, message: object) -> object:
        assert isinstance(message, Write)
        self.writes.put_nowait(message)
        return None


class Runs(Actor):
    """A worker that only records what it is given."""

    def __init__(self, given: asyncio.Queue[Task]) -> None:
        self.given = given

    async def receive(self, message: object) -> object:
        assert isinstance(message, RunTask)
        self.given.put_nowait(message.task)
        return None


def held(new: NewTask, worker: str) -> Task:
    """A task claimed for ``worker``, its handler not started."""
    return Task(id=new.id, type=new.type, queue=new.queue, payload=None, priority=0,
                state=TaskState.CLAIMED, attempt=0, max_attempts=1, timeout=None, run_at=0.0,
                created_at=0.0, updated_at=0.0, worker=worker)  # fmt: skip


# Heartbeats and polls far apart: the tests decide what the dispatcher hears, and when.
SETTINGS = DispatcherSettings(node="n", lease_seconds=30, heartbeat_seconds=60, poll_seconds=60)

Tree = tuple[Supervisor, asyncio.Queue[Write], asyncio.Queue[Task]]


@pytest.fixture
async def tree() -> AsyncIterator[Tree]:
    """A running dispatcher beside a writer and one worker that only record."""
    writes: asyncio.Queue[Write] = asyncio.Queue()
    given: asyncio.Queue[Task] = asyncio.Queue()
    root = Supervisor([
        ChildSpec("writer", lambda: HeldWrites(writes)),
        ChildSpec("worker", lambda: Runs(given)),
        ChildSpec("dispatcher", lambda: Dispatcher(SETTINGS, root.child("writer"), lambda: 0.0)),
    ])  # fmt: skip
    system = ActorSystem(root)
    await system.start()
    yield root, writes, given
    await system.stop()


async def first_claim(tree: Tree) -> tuple[ActorRef, Write]:
    """The tree's dispatcher, told of its worker and of work, and the claim it writes."""
    root, writes, _ = tree
    dispatcher = root.child("dispatcher")
    await dispatcher.tell(WorkerReady("n/w0", root.child("worker")))
    await dispatcher.tell(WorkAvailable())
    claim = await asyncio.wait_for(writes.get(), 5)
    assert isinstance(claim.op, Claim)
    return dispatcher, claim


async def test_a_drain_waits_for_the_claim_in_flight_and_the_tasks_it_brings(tree: Tree) -> None:
    _, writes, given = tree
    dispatcher, claim = await first_claim(tree)

    drained = await dispatcher.ask(Drain(), timeout=5)
    assert not drained.done(), "a claim still in flight may bring tasks"

    task = held(NewTask("job"), "n/w0")
    assert claim.reply is not None
    claim.reply.set_result(Outcome(value=[task]))
    assert (await asyncio.wait_for(given.get(), 5)).id == task.id
    assert not drained.done(), "the claimed task is running here"

    await dispatcher.tell(TaskDone("n/w0", task.id))
    await asyncio.wait_for(drained, 5)
    assert writes.empty(), "a draining node claims nothing more"


async def test_a_drain_with_nothing_running_or_claimed_is_done_at_once(tree: Tree) -> None:
    root, writes, _ = tree
    drained = await root.child("dispatcher").ask(Drain(), timeout=5)
    await asyncio.wait_for(drained, 5)
    assert writes.empty()


class Announces(Runs):
    """A worker that records what it is given and, like a real one, says so at each start."""

    def __init__(self, given: asyncio.Queue[Task], dispatcher: Callable[[], Any]) -> None:
        super().__init__(given)
        self.dispatcher = dispatcher

    async def on_start(self) -> None:
        await self.dispatcher().tell(WorkerReady("n/w0", self.ref))


async def test_a_claim_that_fails_with_a_bug_restarts_the_dispatcher_and_its_workers() -> None:
    writes: asyncio.Queue[Write] = asyncio.Queue()
    given: asyncio.Queue[Task] = asyncio.Queue()
    root = Supervisor([
        ChildSpec("writer", lambda: HeldWrites(writes)),
        ChildSpec("dispatcher", lambda: Dispatcher(SETTINGS, root.child("writer"), lambda: 0.0)),
        ChildSpec("worker", lambda: Announces(given, lambda: root.child("dispatcher"))),
    ], strategy=Strategy.REST_FOR_ONE)  # fmt: skip
    system = ActorSystem(root)
    await system.start()
    try:
        await root.child("dispatcher").tell(WorkAvailable())
        first = await asyncio.wait_for(writes.get(), 5)
        assert isinstance(first.op, Claim)
        assert first.reply is not None
        first.reply.set_exception(OverflowError("a bug, not an outage"))
        # Not wedged: the dispatcher crashed, came back with its worker, and claims again.
        again = await asyncio.wait_for(writes.get(), 5)
        assert isinstance(again.op, Claim)
        assert again.reply is not None
        task = held(NewTask("job"), "n/w0")
        again.reply.set_result(Outcome(value=[task]))
        assert (await asyncio.wait_for(given.get(), 5)).id == task.id
    finally:
        await system.stop()


async def test_a_dispatcher_whose_claims_fail_reports_itself_unhealthy(tree: Tree) -> None:
    _, writes, _ = tree
    dispatcher, claim = await first_claim(tree)
    assert claim.reply is not None
    claim.reply.set_exception(StorageUnavailable("the database is away"))

    async def unhealthy() -> bool:
        report = await dispatcher.ask(Health(), timeout=5)
        return not report.ok and "claim" in (report.reason or "")

    await until(unhealthy, 5)  # once the failed claim's answer reached the dispatcher

    await dispatcher.tell(WorkAvailable())
    again = await asyncio.wait_for(writes.get(), 5)
    assert again.reply is not None
    again.reply.set_result(Outcome(value=[]))

    async def healthy() -> bool:
        return bool((await dispatcher.ask(Health(), timeout=5)).ok)

    await until(healthy, 5)


def test_prefetch_covers_a_claims_round_trip_within_its_bounds() -> None:
    prefetch = Prefetch(base=1, burst=8)
    assert prefetch.now() == 1, "nothing measured yet: the configured prefetch"
    prefetch.claimed(0.005)
    prefetch.ran(0.0001)
    assert prefetch.now() == 8, "tiny tasks: as many as allowed"
    slow = Prefetch(base=1, burst=8)
    slow.claimed(0.005)
    slow.ran(0.002)
    assert slow.now() == 3  # 5 ms of claim over 2 ms per task
    slow.ran(1.0)  # smoothed: one long task moves the average a tenth of the way
    assert slow.now() == 1
    never = Prefetch(base=0, burst=8)
    never.claimed(0.005)
    never.ran(0.0001)
    assert never.now() == 0, "prefetch 0 means a worker holds only what it runs"


async def test_a_task_held_behind_a_long_one_moves_to_a_worker_that_goes_idle(
    database_url: str, gates: Gates
) -> None:
    node = Runtime(node_config(database_url, concurrency=2), make_registry(gates))
    await node.start()
    try:
        first, second = await node.submit([NewTask("gate", {"gate": g}) for g in "ab"])
        await gates.wait_started("a")
        await gates.wait_started("b")
        (held,) = await node.submit([NewTask("echo", "behind")])
        claimed = await node.wait_for(held.id, {TaskState.CLAIMED}, timeout=10)
        holder = claimed.worker
        # Both workers are busy, so the echo waits in the hand of one of them. Let the other
        # one finish: the echo must move to it, not wait for the long task.
        a_worker = (await node.get(first.id)).worker
        long_one, short_one = (first, "b") if a_worker == holder else (second, "a")
        gates.open(short_one)
        done = await node.wait_for(held.id, timeout=10)
        assert done.state is TaskState.SUCCEEDED
        assert done.worker is not None
        assert done.worker != holder, "run by the worker that went idle"
        still = await node.wait_for(long_one.id, {TaskState.RUNNING}, timeout=10)
        assert still.state is TaskState.RUNNING, "still blocked"
        # Moved inside the node: one claim, no lease left to expire, started and finished
        # by the worker that went idle, one attempt.
        kinds = [(e.kind, e.worker) for e in await node.history(held.id)]
        assert kinds == [
            (EventKind.SUBMITTED, None),
            (EventKind.CLAIMED, holder),
            (EventKind.SUCCEEDED, done.worker),  # carrying the start of this short run
        ]
        assert done.attempt == 1
    finally:
        for name in "ab":
            gates.open(name)
        await node.stop()


class StartsAtOnce(Actor):
    """A writer that starts every held task it is asked to (as the journal would when no
    better task is ready) and records the other writes."""

    def __init__(self, tasks: dict[str, Task], writes: asyncio.Queue[Write]) -> None:
        self.tasks = tasks
        self.writes = writes

    async def receive(self, message: object) -> object:
        assert isinstance(message, Write)
        op = message.op
        if isinstance(op, Start) and message.reply is not None:
            task = attrs.evolve(self.tasks[op.task_id], state=TaskState.RUNNING, attempt=1,
                                worker=op.worker)  # fmt: skip
            message.reply.set_result(Outcome(Started(task)))
        else:
            self.writes.put_nowait(message)
        return None


class Heard(Actor):
    """A dispatcher stand-in that records what the workers tell it."""

    def __init__(self, heard: asyncio.Queue[object]) -> None:
        self.heard = heard

    async def receive(self, message: object) -> object:
        self.heard.put_nowait(message)
        return None


async def test_a_cancel_that_reaches_the_worker_a_task_left_follows_it(gates: Gates) -> None:
    heard: asyncio.Queue[object] = asyncio.Queue()
    writes: asyncio.Queue[Write] = asyncio.Queue()

    def worker(worker_id: str) -> Worker:
        deps = WorkerDeps(node="n", registry=make_registry(gates), writer=root.child("writer"),
                          dispatcher=root.child("dispatcher"), clock=lambda: 0.0,
                          rng=random.Random(0))  # fmt: skip
        return Worker(worker_id, deps)

    tasks: dict[str, Task] = {}
    root = Supervisor([
        ChildSpec("writer", lambda: StartsAtOnce(tasks, writes)),
        ChildSpec("dispatcher", lambda: Heard(heard)),
        ChildSpec("n/w0", lambda: worker("n/w0")),
        ChildSpec("n/w1", lambda: worker("n/w1")),
    ])  # fmt: skip
    system = ActorSystem(root)
    await system.start()
    try:
        w0, w1 = root.child("n/w0"), root.child("n/w1")
        long, moved = (attrs.evolve(held(NewTask("gate", {"gate": g}), "n/w0"),
                                    payload={"gate": g}) for g in ("long", "moved"))  # fmt: skip
        tasks.update({long.id: long, moved.id: moved})
        await w0.tell(RunTask(long))
        await w0.tell(RunTask(moved))  # in w0's hand, behind the long one
        await gates.wait_started("long")
        await w0.tell(HandOver("n/w1", w1))
        await gates.wait_started("moved")  # now running on w1

        await w0.tell(CancelTask(moved.id))  # the dispatcher still thinks w0 holds it
        await gates.wait_cancelled("moved")
        assert not gates.cancelled.get("long", asyncio.Event()).is_set()
    finally:
        gates.open("long")
        await system.stop()


async def test_new_work_a_node_does_not_serve_wakes_no_claim() -> None:
    """A node serving `mail` hears every commit: a task of another queue must not cost it a
    claim (a write transaction) each time; one of `mail` must."""
    writes: asyncio.Queue[Write] = asyncio.Queue()
    given: asyncio.Queue[Task] = asyncio.Queue()
    settings = attrs.evolve(SETTINGS, queues=("mail",))
    root = Supervisor([
        ChildSpec("writer", lambda: HeldWrites(writes)),
        ChildSpec("worker", lambda: Runs(given)),
        ChildSpec("dispatcher", lambda: Dispatcher(settings, root.child("writer"), lambda: 0.0)),
    ])  # fmt: skip
    system = ActorSystem(root)
    await system.start()
    try:
        dispatcher = root.child("dispatcher")
        await dispatcher.tell(WorkerReady("n/w0", root.child("worker")))
        first = await asyncio.wait_for(writes.get(), 5)  # a new worker: what is there?
        assert first.reply is not None
        first.reply.set_result(Outcome(value=[]))  # nothing
        await asyncio.sleep(0.2)  # the claim's answer reaches the dispatcher: none in flight

        def submitted(queue: str) -> Committed:
            task = attrs.evolve(held(NewTask("job", queue=queue), "n/w0"),
                                state=TaskState.QUEUED, worker=None)  # fmt: skip
            event = Event(EventKind.SUBMITTED, task.id, 0.0, "n")
            return Committed([Change(event, None, task)])

        for _ in range(5):
            await dispatcher.tell(submitted("default"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(writes.get(), 0.3)
        await dispatcher.tell(submitted("mail"))
        claim = await asyncio.wait_for(writes.get(), 5)
        assert isinstance(claim.op, Claim)
    finally:
        await system.stop()
