"""RetentionSweeper: finished tasks leave the ``tasks`` projection once they are older than
the retention period, so the hot table stays small while the journal keeps their history.

Each sweep expires them in bounded batches (one journal operation each, one ``expired``
event per task). On a cluster every node sweeps; the journal's ``SKIP LOCKED`` read gives
each task to one node, so each expires once. Per-queue periods come from ``overrides``, an
async callable giving ``{queue: seconds}`` (empty: the node's period for every queue), read
at each sweep so a changed setting applies at the next one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping

import attrs

from actorq.actors.core import Actor, ActorRef
from actorq.actors.journal_writer import write
from actorq.actors.ticker import Ticker
from actorq.errors import ActorqError
from actorq.journal.base import Expire

log = logging.getLogger("actorq.retention")

Overrides = Callable[[], Awaitable[Mapping[str, float]]]
BATCH = 500  # tasks expired per transaction


async def no_overrides() -> Mapping[str, float]:
    return {}


MAX_INTERVAL = 60.0


def sweep_interval(retention: float) -> float:
    """How often to sweep: a tenth of the shortest period, between 50 ms and a minute."""
    return min(MAX_INTERVAL, max(0.05, retention / 10))


@attrs.frozen
class Sweep:
    pass


class RetentionSweeper(Actor):
    def __init__(
        self,
        writer: ActorRef,
        node: str,
        clock: Callable[[], float],
        retention: float,
        write_timeout: float,
        overrides: Overrides = no_overrides,
        batch: int = BATCH,
    ) -> None:
        self._writer = writer
        self._node = node
        self._clock = clock
        self._retention = retention
        self._write_timeout = write_timeout
        self._overrides = overrides
        self._batch = batch
        self._ticker: Ticker | None = None
        self.expired = 0  # by this node since it started, for tests and logs

    async def on_start(self) -> None:
        first = self._retention if self._retention > 0 else MAX_INTERVAL * 10
        self._ticker = Ticker(self.ref, Sweep(), sweep_interval(first))
        self._ticker.start()
        await self.ref.tell(Sweep())

    async def on_stop(self) -> None:
        if self._ticker is not None:
            await self._ticker.stop()

    async def receive(self, message: object) -> object:
        if isinstance(message, Sweep):
            await self._sweep()
        return None

    async def _sweep(self) -> None:
        try:
            overrides = dict(await self._overrides())
        except Exception as exc:  # noqa: BLE001 - settings unreadable now: keep the default
            log.warning("per-queue retention unavailable, sweeping with the default: %r", exc)
            overrides = {}
        if self._ticker is not None:
            # A queue kept for less than the node's period is swept as often as it needs.
            periods = [p for p in (self._retention, *overrides.values()) if p > 0]
            self._ticker.retune(sweep_interval(min(periods, default=MAX_INTERVAL * 10)))
        while True:
            keep = self._retention if self._retention > 0 else math.inf  # 0: keep for ever
            op = Expire(self._clock(), self._node, keep, overrides, self._batch)
            try:
                expired = (await write(self._writer, op, timeout=self._write_timeout)).unwrap()
            except (ActorqError, TimeoutError) as exc:
                log.warning("expiring finished tasks failed: %s", exc)
                return
            self.expired += len(expired)
            if expired:
                log.debug("expired %d finished task(s)", len(expired))
            if len(expired) < self._batch:
                return
