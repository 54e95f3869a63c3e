"""QueueWatch: what a Dispatcher knows of the settings of the queues its node serves.

The settings change on any node; this node hears of it through its own commits, another
node's notice, or the poll, and reads them again (never in the Dispatcher's loop: a read runs
as a job of its own and answers with ``QueuesRead``). The Dispatcher acts on two facts: which
served queues are paused (its workers must not start a held task of one without asking the
journal) and whether any served queue limits claims (a short claim then says little).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import attrs

from actorq.actors.core import ActorRef
from actorq.queues import QueueSettings

log = logging.getLogger("actorq.dispatcher")

Reader = Callable[[], Awaitable[list[QueueSettings]]]


@attrs.frozen
class QueuesChanged:
    """A queue's settings may have changed (here, on another node, or the poll): read them."""


@attrs.frozen
class QueuesRead:
    """The queues' settings, as the watch's own read found them."""

    settings: tuple[QueueSettings, ...] | None
    error: BaseException | None = None


@attrs.frozen
class PausedQueues:
    """To a worker: the paused queues. A held task of one starts only through the journal
    (``journal.base.Start``), which gives it back while its queue is paused."""

    names: frozenset[str]


class QueueWatch:
    """Owned by the Dispatcher; its reads answer to the Dispatcher's mailbox."""

    def __init__(
        self, read: Reader | None, served: Sequence[str] | None, owner: ActorRef, timeout: float
    ) -> None:
        self._read = read
        self._served = served
        self._owner = owner
        self._timeout = timeout
        self._job: asyncio.Task[None] | None = None
        self._again = False
        self.paused: frozenset[str] = frozenset()
        self.limited = False  # a served queue has settings that limit claims
        self._seen: tuple[QueueSettings, ...] | None = None

    @property
    def active(self) -> bool:
        return self._read is not None

    def refresh(self) -> None:
        """Read the settings again (once more after a read in flight, if one is)."""
        if self._read is None:
            return
        if self._job is not None:
            self._again = True
            return
        self._job = asyncio.create_task(self._run(self._read), name="dispatcher:queues")

    async def _run(self, read: Reader) -> None:
        try:
            reply = QueuesRead(tuple(await asyncio.wait_for(read(), self._timeout)))
        except Exception as exc:  # noqa: BLE001 - any failure must reach the loop
            reply = QueuesRead(None, exc)
        await self._owner.tell(reply)

    def update(self, read: QueuesRead) -> tuple[bool, bool]:
        """Take a read's answer: whether the paused queues changed, and whether any served
        queue's settings did (a resume or a raised limit: worth a claim at once)."""
        self._job = None
        if self._again:
            self._again = False
            self.refresh()
        if read.settings is None:
            log.warning("reading the queues' settings failed: %r", read.error)
            return False, False
        served = tuple(q for q in read.settings if self._served is None or q.name in self._served)
        changed, self._seen = served != self._seen, served
        self.limited = any(q.limits_claims for q in served)
        paused = frozenset(q.name for q in served if q.paused)
        paused_changed, self.paused = paused != self.paused, paused
        return paused_changed, changed

    def stop(self) -> None:
        if self._job is not None:
            self._job.cancel()
