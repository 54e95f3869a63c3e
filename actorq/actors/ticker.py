"""Ticker: sends an actor the same message at a fixed interval, for its periodic duties;
Alarm: sends it a message at a time it sets (the earliest asked for).

The ticker never blocks on a busy actor: a tick that finds the mailbox full is skipped, the
next one will do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from actorq.actors.core import ActorRef, ActorStopped, MailboxFull


class Ticker:
    def __init__(self, ref: ActorRef, message: object, interval: float) -> None:
        self._ref = ref
        self._message = message
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
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
