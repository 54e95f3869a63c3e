"""Ticker: sends an actor the same message at a fixed interval, for its periodic duties.

The ticker never blocks on a busy actor: a tick that finds the mailbox full is skipped, the
next one will do.
"""

from __future__ import annotations

import asyncio
import contextlib

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
