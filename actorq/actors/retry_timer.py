"""RetryTimer: wakes scheduled work when it becomes due.

It keeps one timer, set for the earliest run_at among scheduled tasks (delayed submissions and
retries in backoff). When it fires, due tasks are promoted to queued in one journal operation
and the Dispatcher hears of it through the writer's commit notice. A slow refresh from the
journal covers scheduled work that another process added.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from actorq.actors.core import Actor, ActorRef
from actorq.actors.journal_writer import Committed, write
from actorq.actors.ticker import Alarm, Ticker
from actorq.errors import ActorqError
from actorq.journal.base import Journal, PromoteDue
from actorq.model import TaskState

log = logging.getLogger("actorq.retry_timer")


@attrs.frozen
class Fire:
    pass


@attrs.frozen
class Refresh:
    pass


class RetryTimer(Actor):
    def __init__(
        self,
        journal: Journal,
        writer: ActorRef,
        node: str,
        clock: Callable[[], float],
        refresh_seconds: float,
        write_timeout: float,
    ) -> None:
        self._journal = journal
        self._write_timeout = write_timeout
        self._writer = writer
        self._node = node
        self._clock = clock
        self._refresh = refresh_seconds
        self._alarm: Alarm | None = None
        self._ticker: Ticker | None = None

    async def on_start(self) -> None:
        self._alarm = Alarm(self.ref, Fire(), self._clock)
        self._ticker = Ticker(self.ref, Refresh(), self._refresh)
        self._ticker.start()
        await self._rearm()

    async def on_stop(self) -> None:
        if self._ticker is not None:
            await self._ticker.stop()
        if self._alarm is not None:
            self._alarm.cancel()

    async def receive(self, message: object) -> object:
        match message:
            case Committed(changes):
                due = [c.after.run_at for c in changes if c.after.state is TaskState.SCHEDULED]
                if due:
                    self._arm(min(due))
            case Fire():
                assert self._alarm is not None
                self._alarm.rang()
                await self._promote()
            case Refresh():
                await self._rearm()
        return None

    async def _promote(self) -> None:
        try:
            op = PromoteDue(self._clock(), self._node)
            outcome = await write(self._writer, op, timeout=self._write_timeout)
            outcome.unwrap()
        except (ActorqError, TimeoutError) as exc:
            log.warning("promoting due tasks failed; retrying at the next refresh: %s", exc)
            return
        await self._rearm()

    async def _rearm(self) -> None:
        try:
            due = await self._journal.next_due()
        except ActorqError as exc:
            log.warning("cannot read the next due time: %s", exc)
            return
        if due is not None:
            self._arm(due)

    def _arm(self, at: float) -> None:
        assert self._alarm is not None
        self._alarm.set(at)
