"""Concurrent callers of one journal share a transaction, and so its commit and fsync.

A process without a node (a web app that enqueues with ``App.enqueue``) writes the journal
itself. Callers that arrive while one write runs wait for their turn; the first to get it runs
the operations of every caller then waiting in one transaction (in arrival order, so each still
sees the ones before it; on PostgreSQL a batch of submissions alone is one statement), and each
caller gets its own outcomes once that commit is durable. A lone caller runs alone, without
delay: nothing waits to fill a batch. (A node does the same in its JournalWriter, whose calls
come one at a time.) Both journals' ``run`` go through it.

If a shared transaction fails for what one caller's operations carry, each caller's operations
run again alone, so only the one at fault gets the error. If the database cannot be used, all
of them get that error at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import attrs

from actorq.errors import StorageUnavailable
from actorq.journal.base import Op, Outcome

RunOps = Callable[[list[Op]], Awaitable[list[Outcome]]]


@attrs.define(eq=False)  # one caller's call: told apart by identity
class _Call:
    ops: Sequence[Op]
    done: asyncio.Future[list[Outcome]]

    def settle(self, outcomes: list[Outcome]) -> None:
        if not self.done.done():
            self.done.set_result(outcomes)

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class SharedCommits:
    """``run(ops)`` as ``run_ops`` does, with concurrent callers' operations in one call."""

    def __init__(self, run_ops: RunOps) -> None:
        self._run_ops = run_ops
        self._waiting: list[_Call] = []
        self._turn = asyncio.Lock()
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, ops: Sequence[Op]) -> list[Outcome]:
        call = _Call(ops, asyncio.get_running_loop().create_future())
        self._waiting.append(call)
        try:
            async with self._turn:
                if not call.done.done():  # no one took it along: run what waits, this first
                    batch, self._waiting = self._waiting, []
                    if len(batch) == 1:  # alone: run here, no task to start
                        await self._run_all(batch)
                        return await call.done
                    # Its own task, shielded: this caller's cancellation must not leave the
                    # others it took along without their answer.
                    task = asyncio.ensure_future(self._run(batch))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
                    with contextlib.suppress(Exception):  # each caller has it in its future
                        await asyncio.shield(task)
        except asyncio.CancelledError:
            if call in self._waiting:  # not taken yet: it is not run at all
                self._waiting.remove(call)
            raise
        return await call.done

    async def wait_closed(self) -> None:
        """Until the batches already running have answered their callers."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _run(self, batch: list[_Call]) -> None:
        try:
            await self._run_all(batch)
        except BaseException as exc:
            for call in batch:
                call.fail(exc)
            raise

    async def _run_all(self, batch: list[_Call]) -> None:
        try:
            outcomes = await self._run_ops([op for call in batch for op in call.ops])
        except StorageUnavailable as exc:  # the database, not an operation: all fail
            for call in batch:
                call.fail(exc)
            return
        except Exception as exc:  # noqa: BLE001 - one caller's operations may be at fault
            if len(batch) == 1:
                batch[0].fail(exc)
                return
            for call in batch:
                try:
                    call.settle(await self._run_ops(list(call.ops)))
                except Exception as alone:  # noqa: BLE001 - its own error, to its caller
                    call.fail(alone)
            return
        start = 0
        for call in batch:
            call.settle(outcomes[start : start + len(call.ops)])
            start += len(call.ops)
