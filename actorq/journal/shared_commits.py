"""Concurrent callers of one journal share its commits: a client's group commit.

A process that runs no node writes the journal directly, one ``run`` per enqueue. While one
of those is in flight, the next callers wait and then go together, in one ``run`` (on
PostgreSQL, one statement for all their submissions): a lone caller goes at once and alone,
so nothing waits that did not have to. One operation's error is its own, as in the node's
journal writer: a batch refused for what one operation carries runs again in halves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from actorq.errors import StorageUnavailable
from actorq.journal.base import Journal, Op, Outcome

log = logging.getLogger("actorq.journal.shared_commits")

_Waiting = tuple[Op, "asyncio.Future[Outcome]"]


class SharedCommits:
    """``run`` one operation on ``journal``, together with whatever others wait meanwhile."""

    def __init__(self, journal: Journal, max_batch: int = 500) -> None:
        self._journal = journal
        self._max = max_batch
        self._busy = False  # a run is in flight
        self._waiting: list[_Waiting] = []
        self._task: asyncio.Task[None] | None = None  # running the waiting ones, if any

    async def run(self, op: Op) -> Outcome:
        if self._busy:
            reply: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            self._waiting.append((op, reply))
            return await reply
        self._busy = True
        try:
            (outcome,) = await self._journal.run([op])
        finally:
            self._next()
        return outcome

    async def close(self) -> None:
        """Wait for the batches already handed over."""
        while self._task is not None:
            await asyncio.wait([self._task])  # its callers hear of its errors, not this one

    def _next(self) -> None:
        if not self._waiting:
            self._busy, self._task = False, None
            return
        batch, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
        self._task = asyncio.create_task(self._run_then_next(batch))

    async def _run_then_next(self, batch: list[_Waiting]) -> None:
        try:
            await self._commit(batch)
        except BaseException:
            # Cancelled mid-run: whether it committed is unknown; say so, not nothing.
            _fail(batch, StorageUnavailable("the write was interrupted"))
            raise
        finally:
            self._next()

    async def _commit(self, batch: list[_Waiting]) -> None:
        chunks = [batch]  # a stack: the next chunk to run is last (first half first)
        while chunks:
            chunk = chunks.pop()
            try:
                outcomes = await self._journal.run([op for op, _ in chunk])
            except StorageUnavailable as exc:
                _fail([w for c in (chunk, *chunks) for w in c], exc)
                return
            except Exception as exc:  # noqa: BLE001 - one operation's error is its own
                if len(chunk) == 1:
                    _fail(chunk, exc)
                else:
                    log.debug("a shared commit of %d failed (%r): in halves", len(chunk), exc)
                    half = len(chunk) // 2
                    chunks += [chunk[half:], chunk[:half]]
                continue
            for (_, reply), outcome in zip(chunk, outcomes, strict=True):
                if not reply.done():
                    reply.set_result(outcome)


def _fail(batch: Sequence[_Waiting], exc: BaseException) -> None:
    for _, reply in batch:
        if not reply.done():
            reply.set_exception(exc)
