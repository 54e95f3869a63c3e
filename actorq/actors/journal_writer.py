"""JournalWriter: the one door to the journal for writes, batching them into group commits.

Operations queue up in the writer's mailbox while a batch is being committed; the next batch
takes all of them at once, so under load many submits, claims and completions share one
transaction and one fsync. After each commit it tells its subscribers what changed.

A batch whose transaction fails for something one of its operations carries (a value the
database cannot store) runs again in halves, down to single operations, so only the operation
at fault gets the error and the others commit. A batch that fails because the database cannot
be used (``StorageUnavailable``) fails as a whole at once: retrying it piecemeal would only
hammer a database that is down. The writer remembers that failure and reports it to
``Health()`` until a write succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import attrs

from actorq.actors.core import Actor, ActorRef, ActorStopped, MailboxFull
from actorq.actors.health import Health, HealthReport
from actorq.errors import StorageUnavailable
from actorq.journal.base import Change, Journal, Op, Outcome
from actorq.logs import log_changes
from actorq.model import Event

log = logging.getLogger("actorq.journal_writer")


@attrs.frozen
class Write:
    """Run ``op`` in the next batch; ``reply`` (if any) gets its Outcome once durable."""

    op: Op
    reply: asyncio.Future[Outcome] | None = None


@attrs.frozen
class Flush:
    """Commit what has been collected (sent by the writer to itself)."""


@attrs.frozen
class Committed:
    """Published after each commit: every applied event, in journal order."""

    changes: Sequence[Change]
    gap: bool = False  # a lossy subscriber missed at least one Committed before this one
    control: Sequence[Event] = ()  # control events applied (a queue's settings changed)


@attrs.frozen
class Subscriber:
    ref: ActorRef
    # A lossy subscriber only needs a hint ("something changed"); dropping it when its mailbox
    # is full avoids a cycle where the writer waits on an actor that waits on the writer.
    lossy: bool = False


class JournalWriter(Actor):
    mailbox_size = 8192
    drain_on_stop = True  # the releases of a stopping node arrive last; they must be written

    def __init__(self, journal: Journal, subscribers: Sequence[Subscriber], max_batch: int) -> None:
        self._journal = journal
        self._subscribers = subscribers
        self._max_batch = max_batch
        self._missed: set[str] = set()  # lossy subscribers that missed a Committed
        self._pending: list[Write] = []
        self._flush_queued = False
        self._failure: str | None = None  # why the last batch could not be written, if so

    async def receive(self, message: object) -> object:
        match message:
            case Write():
                self._pending.append(message)
                if len(self._pending) >= self._max_batch:
                    await self._flush()
                elif not self._flush_queued:
                    self._queue_flush()
            case Flush():
                self._flush_queued = False
                await self._flush()
            case Health():
                return await self._health()
        return None

    async def _health(self) -> HealthReport:
        if self._failure is not None:
            # Nothing may have been written since the failure: try an empty transaction, so a
            # database that came back is seen without waiting for the next write.
            with contextlib.suppress(StorageUnavailable):
                await self._journal.run([])
                self._failure = None
        return HealthReport(self._failure is None, self._failure)

    def _queue_flush(self) -> None:
        # The Flush lands behind every Write already in the mailbox: they join this batch.
        try:
            self.ref.tell_nowait(Flush())
            self._flush_queued = True
        except MailboxFull:
            pass  # the mailbox is full of writes; max_batch or the next Write will flush

    async def on_stop(self) -> None:
        await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        changes: list[Change] = []
        control: list[Event] = []
        try:
            await self._commit(batch, changes, control)
        except BaseException:
            # Cancelled (or crashed) mid-commit, the outcome is unknown: say so, not nothing.
            _fail(batch, StorageUnavailable("the journal writer stopped during the write"))
            raise
        if changes:
            log_changes(changes)
        if changes or control:
            await self._publish(Committed(changes, control=control))

    async def _commit(
        self, batch: list[Write], changes: list[Change], control: list[Event]
    ) -> None:
        """Run ``batch``; if it fails for what an operation carries, run its halves (first
        half first, so each operation still sees the ones before it)."""
        chunks = [batch]  # a stack: the next chunk to run is last
        while chunks:
            chunk = chunks.pop()
            try:
                outcomes = await self._journal.run([w.op for w in chunk])
            except StorageUnavailable as exc:
                self._failure = str(exc)
                left = [w for c in (chunk, *chunks) for w in c]
                log.error("journal batch of %d operations failed: %s", len(left), exc)
                _fail(left, exc)
                return
            except Exception as exc:  # noqa: BLE001 - one operation's error is its own
                if len(chunk) == 1:
                    log.warning("journal refused %s: %r", type(chunk[0].op).__name__, exc)
                    _fail(chunk, exc)
                else:
                    log.warning("journal batch of %d operations failed (%r); running it in "
                                "halves to find the one at fault", len(chunk), exc)  # fmt: skip
                    half = len(chunk) // 2
                    chunks += [chunk[half:], chunk[:half]]
                continue
            self._failure = None
            for write, outcome in zip(chunk, outcomes, strict=True):
                changes.extend(outcome.changes)
                control.extend(outcome.control)
                if write.reply is not None and not write.reply.done():
                    write.reply.set_result(outcome)
                elif outcome.error is not None:
                    log.debug("unanswered %s refused: %s", type(write.op).__name__, outcome.error)

    async def _publish(self, message: Committed) -> None:
        for sub in self._subscribers:
            try:
                if sub.lossy:
                    missed = sub.ref.name in self._missed
                    sub.ref.tell_nowait(attrs.evolve(message, gap=True) if missed else message)
                    self._missed.discard(sub.ref.name)
                else:
                    await sub.ref.tell(message)
            except MailboxFull:
                log.debug("%s is busy; hint dropped", sub.ref.name)
                self._missed.add(sub.ref.name)  # its next Committed says so
            except ActorStopped:
                # Stopping, the writer outlives the others to write their last releases;
                # an actor stopped for good needs no more news.
                pass


def _fail(writes: Sequence[Write], exc: BaseException) -> None:
    for write in writes:
        if write.reply is not None and not write.reply.done():
            write.reply.set_exception(exc)


async def write(writer: ActorRef, op: Op, *, timeout: float) -> Outcome:
    """Hand ``op`` to the writer and wait until it is committed (or refused)."""
    reply: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    async with asyncio.timeout(timeout):
        await writer.tell(Write(op, reply))
        return await reply
