"""ProgressWriter: one handler run's progress reports, journaled at most once a second.

A handler may report progress as often as it likes (``TaskContext.progress``); the writer
keeps the last report and journals it as a ``progress`` event when a second has passed since
the previous write, or when the run ends (``close``), so the last value of a burst is never
lost. Reports from a handler running in a thread are handed to the worker's loop. The writer
belongs to the worker's loop: only ``report`` may be called from another thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from actorq.model import Event, EventKind, Task

INTERVAL = 1.0  # seconds: at most one progress event per task in this time


class ProgressWriter:
    def __init__(
        self,
        task: Task,
        node: str,
        worker: str,
        write: Callable[[Event], None],
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        interval: float = INTERVAL,
    ) -> None:
        self._task, self._node, self._worker = task, node, worker
        self._write = write
        self._clock, self._monotonic = clock, monotonic
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._pending: tuple[float, str | None, float] | None = None
        self._last: float | None = None  # monotonic time of the last write
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._lock = threading.Lock()  # guards the hand-over slot below
        self._incoming: tuple[float, str | None, float] | None = None
        self._handing = False  # a hand-over to the loop is scheduled

    def report(self, fraction: float, message: str | None) -> None:
        """Take a checked report, from the loop's thread or a handler's own."""
        at = self._clock()
        if threading.get_ident() == self._thread:
            self._take(fraction, message, at)
            return
        # From a handler's thread: the newest report waits in one slot, and the loop is woken
        # once per hand-over, not once per report (a tight loop must not flood it).
        with self._lock:
            self._incoming = (fraction, message, at)
            if self._handing:
                return
            self._handing = True
        self._loop.call_soon_threadsafe(self._hand_over)

    def _hand_over(self) -> None:
        with self._lock:
            incoming, self._incoming, self._handing = self._incoming, None, False
        if incoming is not None:
            self._take(*incoming)

    def _take(self, fraction: float, message: str | None, at: float) -> None:
        if self._closed:
            return
        self._pending = (fraction, message, at)
        if self._timer is not None:
            return  # the write due at the end of this second takes the newest
        now = self._monotonic()
        wait = 0.0 if self._last is None else self._last + self._interval - now
        if wait <= 0:
            self._flush()
        else:
            self._timer = self._loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._pending is None:
            return
        fraction, message, at = self._pending
        self._pending = None
        self._last = self._monotonic()
        data = {"fraction": fraction, "message": message}
        self._write(Event(EventKind.PROGRESS, self._task.id, at, self._node, data, self._worker))

    def close(self, *, write: bool = True) -> None:
        """The run ends: write the report still held back (before its outcome), unless not
        ``write``; take no more."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if write:
            self._flush()
        self._closed = True
