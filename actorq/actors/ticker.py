"""Ticker: sends an actor the same message at a fixed interval, for its periodic duties;
Alarm: sends it a message at a time it sets (the earliest asked for).

The ticker never blocks on a busy actor: a tick that finds the mailbox full is skipped, the
next one will do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actorq.journal.base import Journal

from actorq.actors.core import Actor, ActorRef, ActorStopped, MailboxFull


class Ticker:
    def __init__(self, ref: ActorRef, message: object, interval: float) -> None:
        self._ref = ref
        self._message = message
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"ticker:{self._ref.name}")

    def retune(self, interval: float) -> None:
        """Tick every ``interval`` seconds from now on (a shorter one starts over at once)."""
        shorter, self._interval = interval < self._interval, interval
        if shorter and self._task is not None:
            self._task.cancel()
            self._task = asyncio.create_task(self._run(), name=f"ticker:{self._ref.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self._ref.tell_nowait(self._message)
            except MailboxFull:
                continue
            except ActorStopped:
                return


class Alarm:
    """One timer, set for the earliest time it was asked for: at that time it sends an actor
    ``message`` (the actor then calls ``rang``). A later time than the one set changes
    nothing; an earlier one moves it. If the mailbox is full when it goes off, the alarm is
    left unset, for the actor's next refresh to set again. ``late`` seconds are added to each
    delay, for a clock the timer's loop reads a hair ahead of the one it is compared with."""

    def __init__(
        self, ref: ActorRef, message: object, clock: Callable[[], float], late: float = 0.0
    ) -> None:
        self._ref = ref
        self._message = message
        self._clock = clock
        self._late = late
        self._due: float | None = None
        self._handle: asyncio.TimerHandle | None = None

    def set(self, at: float) -> None:
        if self._due is not None and self._due <= at:
            return
        self.cancel()
        self._due = at
        delay = max(0.0, at - self._clock()) + self._late
        self._handle = asyncio.get_running_loop().call_later(delay, self._ring)

    def rang(self) -> None:
        """The actor received the message: the alarm is unset until set again."""
        self._due = None

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._due = None

    def _ring(self) -> None:
        self._handle = None
        try:
            self._ref.tell_nowait(self._message)
        except (MailboxFull, ActorStopped):
            self._due = None


class DueWork(Actor):
    """An actor with work that comes due (RetryTimer, Scheduler): an ``Alarm`` sends it
    ``fire`` at the earliest due time it knows, and a ``Ticker`` sends ``refresh`` every
    ``refresh_seconds`` (another process may add due work unseen). A subclass reads the next
    due time in ``_rearm`` and handles both messages; on ``fire`` it calls ``_rang`` first."""

    def __init__(
        self,
        journal: Journal,
        writer: ActorRef,
        node: str,
        clock: Callable[[], float],
        refresh_seconds: float,
        write_timeout: float,
        *,
        fire: object,
        refresh: object,
        late: float = 0.0,
    ) -> None:
        self._journal = journal
        self._writer = writer
        self._node = node
        self._clock = clock
        self._refresh = refresh_seconds
        self._write_timeout = write_timeout
        self._fire_message = fire
        self._refresh_message = refresh
        self._late = late
        self._alarm: Alarm | None = None
        self._ticker: Ticker | None = None

    async def on_start(self) -> None:
        self._alarm = Alarm(self.ref, self._fire_message, self._clock, late=self._late)
        self._ticker = Ticker(self.ref, self._refresh_message, self._refresh)
        self._ticker.start()
        await self._rearm()

    async def on_stop(self) -> None:
        if self._ticker is not None:
            await self._ticker.stop()
        if self._alarm is not None:
            self._alarm.cancel()

    async def _rearm(self) -> None:
        raise NotImplementedError

    def _arm(self, at: float) -> None:
        assert self._alarm is not None
        self._alarm.set(at)

    def _rang(self) -> None:
        assert self._alarm is not None
        self._alarm.rang()
