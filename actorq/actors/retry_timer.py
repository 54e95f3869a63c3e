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

from actorq.actors.core import ActorRef
from actorq.actors.journal_writer import Committed, write
from actorq.actors.ticker import DueWork
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


class RetryTimer(DueWork):
    def __init__(
        self,
        journal: Journal,
        writer: ActorRef,
        node: str,
        clock: Callable[[], float],
        refresh_seconds: float,
        write_timeout: float,
    ) -> None:
        super().__init__(journal, writer, node, clock, refresh_seconds, write_timeout,
                         fire=Fire(), refresh=Refresh())  # fmt: skip

    async def receive(self, message: object) -> object:
        match message:
            case Committed(changes):
                due = [c.after.run_at for c in changes if c.after.state is TaskState.SCHEDULED]
                if due:
                    self._arm(min(due))
            case Fire():
                self._rang()
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
