"""LockReaper: gives back the tasks of workers that stopped without a word.

A running task whose lease was not renewed in time belongs to a crashed worker or node. The
reaper re-queues it (or dead-letters it when no attempt is left) through the journal, where
the claim on the row makes sure two reapers on two nodes never reap the same task twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from actorq.actors.core import Actor, ActorRef
from actorq.actors.journal_writer import write
from actorq.actors.ticker import Ticker
from actorq.errors import ActorqError
from actorq.journal.base import ReapExpired

log = logging.getLogger("actorq.lock_reaper")


@attrs.frozen
class Reap:
    pass


class LockReaper(Actor):
    def __init__(
        self,
        writer: ActorRef,
        node: str,
        clock: Callable[[], float],
        interval: float,
        write_timeout: float,
    ) -> None:
        self._writer = writer
        self._write_timeout = write_timeout
        self._node = node
        self._clock = clock
        self._interval = interval
        self._ticker: Ticker | None = None

    async def on_start(self) -> None:
        self._ticker = Ticker(self.ref, Reap(), self._interval)
        self._ticker.start()
        await self.ref.tell(Reap())

    async def on_stop(self) -> None:
        if self._ticker is not None:
            await self._ticker.stop()

    async def receive(self, message: object) -> object:
        if isinstance(message, Reap):
            await self._reap()
        return None

    async def _reap(self) -> None:
        op = ReapExpired(self._clock(), self._node)
        while True:
            try:
                reaped = (await write(self._writer, op, timeout=self._write_timeout)).unwrap()
            except (ActorqError, TimeoutError) as exc:
                log.warning("reaping expired leases failed: %s", exc)
                return
            if reaped:
                log.info("re-queued %d task(s) whose lease expired", len(reaped))
            if len(reaped) < op.limit:
                return
