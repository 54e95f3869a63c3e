"""The actor runtime: actors with bounded mailboxes, refs to talk to them, and supervisors
that restart crashed children the way OTP does (one_for_one / one_for_all, restart
intensity, escalation to the parent)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar

import aiojobs
import attrs

log = logging.getLogger("actorq.actors")


class ActorError(Exception):
    pass


class ActorStopped(ActorError):
    """The actor is stopped for good: it takes no more messages."""


class MailboxFull(ActorError):
    pass


@attrs.frozen
class _Envelope:
    message: object
    reply: asyncio.Future[Any] | None


class Actor:
    """Subclass and override ``receive``. Its state is only touched by its own loop."""

    mailbox_size: ClassVar[int] = 1024
    # Handle what is still in the mailbox on an orderly stop (a writer must not drop writes).
    drain_on_stop: ClassVar[bool] = False
    ref: ActorRef

    async def on_start(self) -> None:
        """Run at every (re)start, before the first message."""

    async def on_stop(self) -> None:
        """Run on an orderly stop (and, best effort, after a crash)."""

    async def receive(self, message: object) -> object:
        raise NotImplementedError(f"{type(self).__name__} does not handle {message!r}")


class ActorRef:
    """The address of an actor. It outlives restarts: its mailbox does too."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self._mailbox: asyncio.Queue[_Envelope] = asyncio.Queue(size)
        self._stopped = False

    def __repr__(self) -> str:
        return f"<ActorRef {self.name}>"

    async def tell(self, message: object) -> None:
        """Send; waits for room in the mailbox (backpressure)."""
        self._check()
        await self._mailbox.put(_Envelope(message, None))

    def tell_nowait(self, message: object) -> None:
        self._check()
        try:
            self._mailbox.put_nowait(_Envelope(message, None))
        except asyncio.QueueFull:
            raise MailboxFull(f"mailbox of {self.name} is full") from None

    async def ask(self, message: object, *, timeout: float) -> Any:
        """Send and wait for the reply; an error raised by the handler is raised here."""
        self._check()
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._mailbox.put(_Envelope(message, reply))
                return await reply
        finally:
            reply.cancel()  # a late answer to an abandoned ask is dropped

    def _check(self) -> None:
        if self._stopped:
            raise ActorStopped(f"{self.name} is stopped")

    def _fit(self, size: int) -> None:
        """Take the actor's own mailbox size at its first start (refs exist before actors)."""
        if size != self._mailbox.maxsize and self._mailbox.empty():
            self._mailbox = asyncio.Queue(size)

    def _close(self) -> None:
        """Stop for good: pending asks fail instead of waiting forever."""
        self._stopped = True
        while not self._mailbox.empty():
            envelope = self._mailbox.get_nowait()
            if envelope.reply is not None and not envelope.reply.done():
                envelope.reply.set_exception(ActorStopped(f"{self.name} stopped"))


class Restart(enum.Enum):
    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after a crash
    TEMPORARY = "temporary"  # never restarted


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"  # restart the child that exited
    ONE_FOR_ALL = "one_for_all"  # restart every child
    REST_FOR_ONE = "rest_for_one"  # restart it and the children started after it


@attrs.frozen
class ChildSpec:
    name: str
    factory: Callable[[], Actor]
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0


class _Cell:
    """A running incarnation of an actor: the instance and its loop."""

    def __init__(self, spec: ChildSpec, ref: ActorRef, on_exit: Callable[[_Cell, Any], None]):
        self.spec = spec
        self.ref = ref
        self.actor: Actor | None = None
        self.job: aiojobs.Job[None] | None = None
        self.stopping = False
        self.busy = False
        self._on_exit = on_exit
        self.started = asyncio.Event()

    async def run(self) -> None:
        error: BaseException | None = None
        try:
            actor = self.spec.factory()
            actor.ref = self.ref
            self.ref._fit(actor.mailbox_size)
            self.actor = actor
            await actor.on_start()
            self.started.set()
            while not self.stopping:
                envelope = await self.ref._mailbox.get()
                self.busy = True
                await self._handle(actor, envelope)
                self.busy = False
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if not self.stopping and (task is None or not task.cancelling()):
                # Nobody stopped us: the actor awaited something that was cancelled (a
                # future, another task). That is an error of its own, not an order to stop.
                error = exc
                await self._stop_after_crash()
        except Exception as exc:  # noqa: BLE001 - a crash goes to the supervisor, not up the stack
            error = exc
            await self._stop_after_crash()
        finally:
            self.started.set()
            self._on_exit(self, error)

    async def _stop_after_crash(self) -> None:
        if self.actor is not None:
            with contextlib.suppress(Exception):
                await self.actor.on_stop()

    async def drain(self) -> None:
        """After the loop ended: handle the messages still queued."""
        assert self.actor is not None
        while not self.ref._mailbox.empty():
            await self._handle(self.actor, self.ref._mailbox.get_nowait())

    async def _handle(self, actor: Actor, envelope: _Envelope) -> None:
        if envelope.reply is None:
            await actor.receive(envelope.message)  # an error here crashes the actor
            return
        if envelope.reply.done():
            return  # the asker gave up
        try:
            result = await actor.receive(envelope.message)
        except Exception as exc:  # noqa: BLE001 - an ask's error belongs to the asker
            if not envelope.reply.done():
                envelope.reply.set_exception(exc)
            return
        if not envelope.reply.done():
            envelope.reply.set_result(result)


@attrs.frozen
class _ChildExited:
    name: str
    cell: _Cell
    error: BaseException | None


class Supervisor(Actor):
    """Starts children in order, stops them in reverse, and restarts the ones that exit."""

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._specs: dict[str, ChildSpec] = {}
        self._refs: dict[str, ActorRef] = {}
        self._cells: dict[str, _Cell] = {}
        self._strategy = strategy
        self._max_restarts = max_restarts
        self._within = within
        self._monotonic = monotonic
        self._restarts: collections.deque[float] = collections.deque()
        self._scheduler: aiojobs.Scheduler | None = None
        for spec in children:
            self._register(spec)

    def _register(self, spec: ChildSpec) -> ActorRef:
        if spec.name in self._specs:
            raise ValueError(f"duplicate child name {spec.name!r}")
        self._specs[spec.name] = spec
        ref = self._refs.get(spec.name)
        if ref is None:
            ref = ActorRef(spec.name, Actor.mailbox_size)
            self._refs[spec.name] = ref
        return ref

    def child(self, name: str) -> ActorRef:
        return self._refs[name]

    # -- lifecycle ----------------------------------------------------------------------

    async def on_start(self) -> None:
        self._scheduler = aiojobs.Scheduler(limit=None, pending_limit=0, close_timeout=1.0)
        for name in list(self._specs):
            await self._start_child(name)

    async def on_stop(self) -> None:
        for name in reversed(list(self._cells)):
            await self._stop_child(name, final=True)
        for ref in self._refs.values():
            ref._close()
        if self._scheduler is not None:
            await self._scheduler.close()

    async def _start_child(self, name: str) -> None:
        assert self._scheduler is not None
        spec = self._specs[name]
        ref = self._refs[name]
        cell = _Cell(spec, ref, self._child_exited)
        self._cells[name] = cell
        cell.job = await _spawn(self._scheduler, cell.run())
        await cell.started.wait()  # children start in order: each on_start done before the next

    async def _stop_child(self, name: str, *, final: bool) -> None:
        cell = self._cells.pop(name, None)
        if cell is None:
            return
        cell.stopping = True
        job = cell.job
        if job is not None and not job.closed:
            if cell.busy:  # let it finish the message in hand, within its shutdown timeout
                with contextlib.suppress(Exception):
                    await job.wait(timeout=cell.spec.shutdown_timeout)
            if not job.closed:
                with contextlib.suppress(Exception):
                    await job.close(timeout=cell.spec.shutdown_timeout)
        if cell.actor is not None:
            try:
                if cell.actor.drain_on_stop:
                    await asyncio.wait_for(cell.drain(), cell.spec.shutdown_timeout)
                await asyncio.wait_for(cell.actor.on_stop(), cell.spec.shutdown_timeout)
            except Exception as exc:  # noqa: BLE001 - one child's stop must not block the rest
                log.warning("stopping %s failed: %r", name, exc)
        if final:
            self._refs[name]._close()

    def _child_exited(self, cell: _Cell, error: BaseException | None) -> None:
        if cell.stopping:
            return
        with contextlib.suppress(ActorStopped, MailboxFull):
            self.ref.tell_nowait(_ChildExited(cell.spec.name, cell, error))

    # -- dynamic children -----------------------------------------------------------------

    async def add_child(self, spec: ChildSpec) -> ActorRef:
        ref = self._register(spec)
        await self._start_child(spec.name)
        return ref

    async def remove_child(self, name: str) -> None:
        await self._stop_child(name, final=True)
        self._specs.pop(name, None)

    # -- supervision ----------------------------------------------------------------------

    async def receive(self, message: object) -> object:
        if isinstance(message, _ChildExited):
            await self._on_exit(message)
        return None

    async def _on_exit(self, exited: _ChildExited) -> None:
        if self._cells.get(exited.name) is not exited.cell:
            return  # an old incarnation
        del self._cells[exited.name]
        spec = self._specs[exited.name]
        crashed = exited.error is not None
        if crashed:
            log.error("actor %s crashed: %r", exited.name, exited.error)
        wanted = spec.restart is Restart.PERMANENT or (
            spec.restart is Restart.TRANSIENT and crashed
        )
        if not wanted:
            self._refs[exited.name]._close()
            return
        now = self._monotonic()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] < now - self._within:
            self._restarts.popleft()
        if len(self._restarts) > self._max_restarts:
            raise ActorError(
                f"restart intensity exceeded ({self._max_restarts} in {self._within}s): "
                f"{exited.name} failed with {exited.error!r}"
            )
        names = list(self._specs)
        if self._strategy is Strategy.ONE_FOR_ALL:
            restart = names
        elif self._strategy is Strategy.REST_FOR_ONE:
            restart = names[names.index(exited.name) :]
        else:
            restart = [exited.name]
        for name in reversed(restart):
            await self._stop_child(name, final=False)
        for name in restart:
            await self._start_child(name)


class ActorSystem:
    """Owns the root supervisor's loop; stops everything when the root fails."""

    def __init__(self, root: Supervisor, *, name: str = "root") -> None:
        self.root = root
        self.name = name
        self._root_ref = ActorRef(name, root.mailbox_size)
        self._failed: BaseException | None = None
        self._done = asyncio.Event()
        self._scheduler: aiojobs.Scheduler | None = None
        self._cell: _Cell | None = None
        self._stopping = False

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    async def start(self) -> None:
        self._scheduler = aiojobs.Scheduler(limit=None, pending_limit=0)
        spec = ChildSpec(self.name, lambda: self.root, Restart.TEMPORARY)
        self._cell = _Cell(spec, self._root_ref, self._root_exited)
        await _spawn(self._scheduler, self._cell.run())
        await self._cell.started.wait()
        if self._failed is not None:
            raise ActorError(f"{self.name} failed to start: {self._failed!r}")

    def _root_exited(self, _cell: _Cell, error: BaseException | None) -> None:
        # The root's children were already stopped by its on_stop, run after the crash.
        if error is not None and not self._stopping:
            self._failed = error
            log.error("%s: root supervisor failed, stopping: %r", self.name, error)
            self._root_ref._close()
            self._done.set()

    async def stop(self) -> None:
        if self._stopping or self._cell is None or self._failed is not None:
            if self._scheduler is not None:
                await self._scheduler.close()
            self._done.set()
            return
        self._stopping = True
        self._cell.stopping = True
        with contextlib.suppress(Exception):
            await self.root.on_stop()
        self._root_ref._close()
        if self._scheduler is not None:
            await self._scheduler.close()
        self._done.set()

    async def wait(self) -> None:
        await self._done.wait()


async def _spawn(
    scheduler: aiojobs.Scheduler, coro: Coroutine[Any, Any, None]
) -> aiojobs.Job[None]:
    """Run ``coro`` as a job of ``scheduler``. A scheduler closed meanwhile (a restart racing
    the system's stop) refuses it: the coroutine is closed then, never left unawaited."""
    try:
        return await scheduler.spawn(coro)
    except BaseException:
        coro.close()
        raise
