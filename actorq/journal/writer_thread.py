"""The thread that owns the SQLite journal's writing connection.

Every write of the journal is one call handed to this thread, so a lone enqueue pays one
hand-off there and one back. A plain queue and ``call_soon_threadsafe`` make that round trip
shorter than an executor's (no work item, no concurrent future chained to an asyncio one),
and calls still run one at a time, in the order they were handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class WriterThread:
    """Runs functions on one thread of its own, in order; ``close`` ends it."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on the thread. Cancelling the caller does not stop a call the thread
        has begun: it runs to its end, and its result is dropped."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._calls.put((fn, done, loop))
        return await done

    def close(self) -> None:
        """Run what was handed over, then end the thread (blocks until it has)."""
        self._calls.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, done, loop = call
            try:
                result, error = fn(), None
            except BaseException as exc:  # noqa: BLE001 - it belongs to the caller
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed: no one waits
                loop.call_soon_threadsafe(_settle, done, result, error)


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.done():  # the caller was cancelled
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)
