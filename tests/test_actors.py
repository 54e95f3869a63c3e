"""The actor runtime itself: tell/ask, supervision, restart intensity, backpressure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actorq.actors.core import (
    Actor,
    ActorError,
    ActorStopped,
    ActorSystem,
    ChildSpec,
    MailboxFull,
    Restart,
    Strategy,
    Supervisor,
)


class Log:
    """What the actors of a test did, in order, and a way to await an entry."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self._changed = asyncio.Event()

    def add(self, entry: str) -> None:
        self.entries.append(entry)
        self._changed.set()

    async def wait_for(self, entry: str, count: int = 1, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while self.entries.count(entry) < count:
                self._changed.clear()
                await self._changed.wait()


class Echo(Actor):
    """Answers asks; crashes on "crash" told; fails an ask on "fail"."""

    instances = 0

    def __init__(self, name: str, log: Log, gate: asyncio.Event | None = None) -> None:
        self.name = name
        self.log = log
        self.gate = gate
        Echo.instances += 1
        self.instance = Echo.instances

    async def on_start(self) -> None:
        self.log.add(f"start {self.name}")

    async def on_stop(self) -> None:
        self.log.add(f"stop {self.name}")

    async def receive(self, message: object) -> object:
        match message:
            case "crash":
                raise RuntimeError(f"{self.name} crashed on purpose")
            case "fail":
                raise ValueError("bad request")
            case "instance":
                return self.instance
            case "block":
                assert self.gate is not None
                await self.gate.wait()
                return "unblocked"
            case _:
                self.log.add(f"{self.name} got {message}")
                return message


def spec(name: str, log: Log, restart: Restart = Restart.PERMANENT, **kw: Any) -> ChildSpec:
    return ChildSpec(name, lambda: Echo(name, log, **kw), restart=restart)


async def started(root: Supervisor) -> ActorSystem:
    system = ActorSystem(root)
    await system.start()
    return system


async def test_ask_returns_the_reply_and_an_ask_error_reaches_the_caller_only() -> None:
    log = Log()
    root = Supervisor([spec("a", log)])
    system = await started(root)
    a = root.child("a")
    assert await a.ask("hello", timeout=1) == "hello"
    first = await a.ask("instance", timeout=1)
    with pytest.raises(ValueError, match="bad request"):
        await a.ask("fail", timeout=1)
    assert await a.ask("instance", timeout=1) == first, "an ask error does not restart"
    await system.stop()


async def test_a_crashing_child_is_restarted_and_its_siblings_are_untouched() -> None:
    log = Log()
    root = Supervisor([spec("a", log), spec("b", log)], strategy=Strategy.ONE_FOR_ONE)
    system = await started(root)
    a, b = root.child("a"), root.child("b")
    a_before = await a.ask("instance", timeout=1)
    b_before = await b.ask("instance", timeout=1)
    await a.tell("crash")
    await log.wait_for("start a", count=2)
    assert await a.ask("instance", timeout=1) != a_before, "a fresh instance"
    assert await b.ask("instance", timeout=1) == b_before
    assert system.failed is None
    await system.stop()


async def test_one_for_all_restarts_every_sibling() -> None:
    log = Log()
    root = Supervisor([spec("a", log), spec("b", log)], strategy=Strategy.ONE_FOR_ALL)
    system = await started(root)
    b_before = await root.child("b").ask("instance", timeout=1)
    await root.child("a").tell("crash")
    await log.wait_for("start b", count=2)
    assert await root.child("b").ask("instance", timeout=1) != b_before
    assert log.entries.index("stop b") > log.entries.index("start b")
    await system.stop()


async def test_rest_for_one_restarts_the_child_and_those_started_after_it() -> None:
    log = Log()
    root = Supervisor([spec(n, log) for n in "abc"], strategy=Strategy.REST_FOR_ONE)
    system = await started(root)
    before = {n: await root.child(n).ask("instance", timeout=1) for n in "abc"}
    await root.child("b").tell("crash")
    await log.wait_for("start c", count=2)
    after = {n: await root.child(n).ask("instance", timeout=1) for n in "abc"}
    assert after["a"] == before["a"], "started before the crashed one: left alone"
    assert after["b"] != before["b"]
    assert after["c"] != before["c"]
    assert log.entries.count("start a") == 1
    await system.stop()


async def test_past_the_restart_intensity_the_failure_escalates_to_the_root() -> None:
    log = Log()
    inner = Supervisor([spec("a", log)], max_restarts=2, within=60)
    root = Supervisor([ChildSpec("inner", lambda: inner)], max_restarts=0)
    system = await started(root)
    a = inner.child("a")
    for n in range(2):
        await a.tell("crash")
        await log.wait_for("start a", count=n + 2)
    await a.tell("crash")  # the third crash within the window: too many
    await asyncio.wait_for(system.wait(), 5)
    assert isinstance(system.failed, ActorError), "the root gave up on its failing child"
    assert "inner" in str(system.failed)
    assert "stop a" in log.entries
    with pytest.raises(ActorStopped):
        await a.tell("hello")


async def test_root_failure_stops_the_system_with_the_reason() -> None:
    log = Log()
    root = Supervisor([spec("a", log)], max_restarts=1, within=60)
    system = await started(root)
    a = root.child("a")
    await a.tell("crash")
    await log.wait_for("start a", count=2)
    await a.tell("crash")
    await asyncio.wait_for(system.wait(), 5)
    assert isinstance(system.failed, ActorError)
    assert "restart intensity" in str(system.failed)
    assert "stop a" in log.entries


async def test_a_full_mailbox_applies_backpressure() -> None:
    log = Log()
    gate = asyncio.Event()

    class Small(Echo):
        mailbox_size = 2

    root = Supervisor([ChildSpec("s", lambda: Small("s", log, gate=gate))])
    system = await started(root)
    s = root.child("s")
    blocked = asyncio.ensure_future(s.ask("block", timeout=5))
    await asyncio.sleep(0)  # let the actor take the blocking message
    await s.tell(1)
    await s.tell(2)
    with pytest.raises(MailboxFull):
        s.tell_nowait(3)
    third = asyncio.ensure_future(s.tell(3))
    done, _ = await asyncio.wait([third], timeout=0.1)
    assert not done, "tell waits while the mailbox is full"
    gate.set()
    await asyncio.wait_for(third, 5)
    assert await blocked == "unblocked"
    await log.wait_for("s got 3")
    assert [e for e in log.entries if e.startswith("s got")] == ["s got 1", "s got 2", "s got 3"]
    await system.stop()


async def test_ask_times_out_cleanly_and_the_actor_stays_usable() -> None:
    log = Log()
    gate = asyncio.Event()
    root = Supervisor([spec("a", log, gate=gate)])
    system = await started(root)
    a = root.child("a")
    with pytest.raises(TimeoutError):
        await a.ask("block", timeout=0.05)
    gate.set()  # the abandoned ask now completes; its reply is dropped
    assert await a.ask("still here", timeout=1) == "still here"
    await system.stop()


async def test_temporary_children_are_not_restarted_transient_only_after_a_crash() -> None:
    log = Log()
    root = Supervisor([spec("t", log, Restart.TEMPORARY), spec("r", log, Restart.TRANSIENT)])
    system = await started(root)
    await root.child("t").tell("crash")
    await root.child("r").tell("crash")
    await log.wait_for("start r", count=2)
    assert log.entries.count("start t") == 1
    with pytest.raises(ActorStopped):
        await root.child("t").ask("hello", timeout=1)
    await system.stop()


async def test_children_stop_in_reverse_order_and_refs_refuse_messages_after() -> None:
    log = Log()
    root = Supervisor([spec("a", log), spec("b", log), spec("c", log)])
    system = await started(root)
    assert [e for e in log.entries if e.startswith("start")] == ["start a", "start b", "start c"]
    await system.stop()
    assert [e for e in log.entries if e.startswith("stop")] == ["stop c", "stop b", "stop a"]
    with pytest.raises(ActorStopped):
        await root.child("a").tell("hello")


async def test_add_and_remove_children_at_run_time() -> None:
    log = Log()
    root = Supervisor()
    system = await started(root)
    ref = await root.add_child(spec("d", log))
    assert await ref.ask("hi", timeout=1) == "hi"
    await root.remove_child("d")
    assert "stop d" in log.entries
    with pytest.raises(ActorStopped):
        await ref.tell("hi")
    await system.stop()


async def test_messages_queued_behind_a_crash_reach_the_restarted_instance() -> None:
    log = Log()
    root = Supervisor([spec("a", log)])
    system = await started(root)
    a = root.child("a")
    first = await a.ask("instance", timeout=1)
    await a.tell("crash")
    await a.tell("after")  # already in the mailbox when the crash happens
    assert await a.ask("instance", timeout=5) != first
    await log.wait_for("a got after")
    assert log.entries.count("start a") == 2, "on_start ran again"
    await system.stop()


class Cancelled(Actor):
    """On a tell, awaits a future someone else cancels: a CancelledError that is no stop."""

    def __init__(self, log: Log) -> None:
        self.log = log

    async def on_start(self) -> None:
        self.log.add("start")

    async def receive(self, message: object) -> object:
        if message == "await a cancelled future":
            doomed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            doomed.cancel()
            await doomed
        return message


async def test_a_cancelled_error_escaping_receive_is_a_crash_not_a_stop() -> None:
    log = Log()
    root = Supervisor([ChildSpec("c", lambda: Cancelled(log), restart=Restart.TRANSIENT)])
    system = await started(root)
    await root.child("c").tell("await a cancelled future")
    await log.wait_for("start", count=2)  # restarted: a transient child is, after a crash
    assert await root.child("c").ask("still here", timeout=1) == "still here"
    await system.stop()


async def test_a_job_refused_by_a_closed_scheduler_leaves_no_unawaited_coroutine() -> None:
    """A child restarting while the system stops: its cell's coroutine is closed, not left to
    warn 'never awaited' (which the test suite turns into a failure elsewhere)."""
    import gc
    import warnings

    import aiojobs

    from actorq.actors.core import _spawn

    scheduler = aiojobs.Scheduler()
    await scheduler.close()
    ran: list[bool] = []

    async def body() -> None:
        ran.append(True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError):
            await _spawn(scheduler, body())
        gc.collect()
    assert ran == []
    assert not [w for w in caught if "never awaited" in str(w.message)]
