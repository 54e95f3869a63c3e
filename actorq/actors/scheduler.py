"""Scheduler: fires recurring schedules when their next tick comes.

It keeps one timer, set for the earliest next tick among the schedules, and a slow refresh
from the journal that finds schedules saved or changed on other nodes. When the timer goes
off it writes one ``FireSchedules``: the database decides which due rows this node fires
(every node of a cluster runs a Scheduler; a row is fired by exactly one, see
``journal/schedule_batch.py``). The tasks it enqueues reach the Dispatcher through the
writer's commit notice, and other nodes through their wake-ups.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs

from actorq.actors.core import ActorError, ActorRef
from actorq.actors.journal_writer import write
from actorq.actors.ticker import DueWork
from actorq.errors import ActorqError
from actorq.journal.base import FireSchedules, Journal

log = logging.getLogger("actorq.scheduler")

# A timer may go off a hair before its time by the clock it is compared with: waiting this
# much longer spares a firing that finds nothing due.
_LATE = 0.001
# A firing that found nothing to fire while a row looked due (another node holds it, about to
# commit its next tick): look again after this long, not at once.
_AGAIN = 0.05


@attrs.frozen
class Fire:
    pass


@attrs.frozen
class Rearm:
    """Read the next tick again (a schedule was saved here, or the refresh came round)."""


class Scheduler(DueWork):
    def __init__(
        self,
        journal: Journal,
        writer: ActorRef,
        node: str,
        clock: Callable[[], float],
        refresh_seconds: float,
        write_timeout: float,
        limit: int = 100,
    ) -> None:
        super().__init__(journal, writer, node, clock, refresh_seconds, write_timeout,
                         fire=Fire(), refresh=Rearm(), late=_LATE)  # fmt: skip
        self._limit = limit

    async def receive(self, message: object) -> object:
        match message:
            case Fire():
                self._rang()
                await self._fire()
            case Rearm():
                await self._rearm()
        return None

    async def _fire(self) -> None:
        try:
            op = FireSchedules(self._clock(), self._node, self._limit)
            outcome = await write(self._writer, op, timeout=self._write_timeout)
            fired = outcome.unwrap()
        except (ActorqError, TimeoutError) as exc:
            log.warning("firing due schedules failed; trying again at the next refresh: %s", exc)
            return
        except ActorError:  # the writer stopped: the node is stopping, nothing is lost
            return
        if len(fired) >= self._limit:  # more may be due than one batch took
            self._arm(self._clock())
            return
        await self._rearm(None if fired else self._clock() + _AGAIN)

    async def _rearm(self, not_before: float | None = None) -> None:
        try:
            due = await self._journal.next_schedule_due()
        except ActorqError as exc:
            log.warning("cannot read the next tick of the schedules: %s", exc)
            return
        if due is not None:
            self._arm(due if not_before is None else max(due, not_before))
