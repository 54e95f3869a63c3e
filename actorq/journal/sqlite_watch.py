"""Hearing another process's commits to a SQLite file.

A web app that enqueues with ``App.enqueue`` and an ``actorq worker`` beside it share one
file and no socket. Instead of polling faster, the journal watches the file's write-ahead log
with inotify (Linux): every commit, ours or another process's, writes to it. What tells the
two apart is ``PRAGMA data_version`` on the journal's *writer* connection: SQLite moves it only
for commits made by other connections, and the writer is this process's only writing
connection, so a new value means another process committed. Then the node hears "there may be
work".

A write to the log comes before its commit is visible (the commit waits for its fsync), so a
write starts a short series of checks, 1 ms apart and then further, until ``SETTLE``
seconds pass with no new write. Checks run on the writer thread. The writer also checks as
each of its own transactions begins (SQLite lets one connection write at a time, so that
check sees every commit made before), so while this node writes, the watcher takes the log's
writes for its own and only looks again once the writer has been quiet for ``REST``
seconds. It keeps reading the inotify descriptor all along (a read is cheaper than taking
the descriptor out of the event loop and back). An idle node does nothing at all.

A commit is visible the moment its writer returns from it, so every actorq process also
rings a bell after each durable commit: one byte written to a file beside the database
(``FILE-bell``, made on first use). The watcher watches the bell too, and a ring is answered
with one check at once: a commit heard that way reaches the node in a thread hop, not after
the series' first waits. The log's series stays for writers that do not ring.

Where inotify is missing (not Linux) the watcher does not start and the runtime's fallback
poll covers cross-process work, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("actorq.journal.sqlite")

MIN_INTERVAL = 0.001  # the first check after a write, and the gap that then doubles
SETTLE = 0.5  # how long after the last write checks go on: covers a slow fsync
REST = 0.002  # while the writer is busy, the watcher sleeps in steps of this long


def bell_path(path: str) -> str:
    return f"{path}-bell"


class Bell:
    """Rung on the writer thread after each durable commit (see the module's docstring). A
    bell that cannot be made (a read-only folder) stays silent: the log's series remains."""

    def __init__(self, path: str) -> None:
        self._path = bell_path(path)
        self._fd: int | None = None
        self._broken = False
        self.rang_at = 0.0  # monotonic time of this process's last ring

    def ring(self) -> None:
        if self._broken:
            return
        self.rang_at = time.monotonic()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.pwrite(self._fd, b"1", 0)
        except OSError as exc:
            self._broken = True
            log.debug("cannot ring %s (%s); other processes hear the log", self._path, exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ForeignCommits:
    """Calls ``on_foreign`` (on the event loop) soon after another process commits to the
    database at ``path``. ``db`` is the writer connection, ``on_writer`` runs a function on
    its thread."""

    def __init__(
        self,
        path: str,
        db: sqlite3.Connection,
        on_writer: Callable[[Callable[[], None]], Awaitable[None]],
        on_foreign: Callable[[], None],
        bell: Bell | None = None,
    ) -> None:
        self._wal = f"{path}-wal"
        self._own_bell = bell  # this process's: a ring just after its own is taken for it
        self._bell = bell_path(path)
        self._bell_inotify: Any = None
        self._answering: asyncio.Task[None] | None = None  # a check for a ring, on its way
        self._db = db
        self._on_writer = on_writer
        self._on_foreign = on_foreign
        self._loop = asyncio.get_running_loop()
        self._inotify: Any = None
        self._seen: int | None = None  # the writer's data_version at its last check
        self._checked_at = 0.0  # monotonic time of the last check (writer thread)
        self._written_at = 0.0  # monotonic time of the last write seen
        self._in_transaction = False  # the writer's, set on its thread
        self._checks: asyncio.Task[None] | None = None
        self._resting: asyncio.TimerHandle | None = None

    async def start(self) -> bool:
        """Watch the log; False where inotify is not available (the caller keeps polling)."""
        try:
            from inotify_simple import INotify, flags
        except ImportError:  # not Linux: the dependency is installed on Linux only
            return False
        try:
            inotify = INotify(nonblocking=True)
            inotify.add_watch(self._wal, flags.MODIFY)
        except OSError as exc:  # no log file (not WAL mode), too many watches, ...
            log.warning("cannot watch %s for other processes' commits (%s); polling", self._wal,
                        exc.strerror or exc)  # fmt: skip
            return False
        await self._on_writer(self.check)
        self._inotify = inotify
        self._loop.add_reader(inotify.fileno(), self._written)
        try:
            os.close(os.open(self._bell, os.O_WRONLY | os.O_CREAT, 0o644))
            bell = INotify(nonblocking=True)
            bell.add_watch(self._bell, flags.MODIFY)
        except OSError as exc:  # a read-only folder: the log's series alone
            log.debug("cannot watch %s (%s)", self._bell, exc.strerror or exc)
        else:
            self._bell_inotify = bell
            self._loop.add_reader(bell.fileno(), self._rung)
        return True

    async def stop(self) -> None:
        if self._resting is not None:
            self._resting.cancel()
            self._resting = None
        for inotify in (self._inotify, self._bell_inotify):
            if inotify is not None:
                self._loop.remove_reader(inotify.fileno())
                inotify.close()
        self._inotify = self._bell_inotify = None
        for task in (self._checks, self._answering):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._checks = self._answering = None

    def began(self) -> None:
        """On the writer thread, as a transaction begins."""
        self._in_transaction = True
        self.check()

    def ended(self) -> None:
        """On the writer thread, as a transaction ends."""
        self._in_transaction = False
        self._checked_at = time.monotonic()  # nothing foreign could commit meanwhile

    def check(self) -> None:
        """On the writer thread, outside a transaction or at its start: has another
        connection committed since the last check?"""
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        self._checked_at = time.monotonic()
        if version != self._seen:
            first = self._seen is None
            self._seen = version
            if not first:
                self._loop.call_soon_threadsafe(self._on_foreign)

    def _written(self) -> None:
        self._drain()  # one series of checks covers every write read here
        now = self._written_at = time.monotonic()
        if self._busy(now):  # these writes are the writer's own: look again once it rests
            if self._resting is None:
                self._resting = self._loop.call_later(REST, self._wake)
            return
        self._settle_soon()

    def _rung(self) -> None:
        _drain(self._bell_inotify.fileno())
        if self._answering is not None and not self._answering.done():
            return  # a check is on its way
        if self._in_transaction:
            return  # the writer's next transaction checks as it begins, or the log's series
        own = self._own_bell
        if own is not None and time.monotonic() - own.rang_at < REST:
            return  # most likely our own ring; if not, the log's series hears it
        self._answering = self._loop.create_task(self._answer(), name="actorq-sqlite-bell")

    async def _answer(self) -> None:
        try:
            await self._on_writer(self.check)
        except Exception as exc:  # noqa: BLE001 - the journal closing; the poll remains
            log.debug("data_version check failed: %r", exc)

    def _drain(self) -> None:
        _drain(self._inotify.fileno())

    def _busy(self, now: float) -> bool:
        return self._in_transaction or now - self._checked_at < REST

    def _wake(self) -> None:
        now = time.monotonic()
        if self._busy(now):
            self._resting = self._loop.call_later(REST, self._wake)
            return
        self._resting = None
        if self._inotify is not None:
            self._written_at = now  # writes may have come while resting: settle as if now
            self._settle_soon()

    def _settle_soon(self) -> None:
        if self._checks is None or self._checks.done():
            self._checks = self._loop.create_task(self._settle(), name="actorq-sqlite-watch")

    async def _settle(self) -> None:
        delay = MIN_INTERVAL
        while True:
            await asyncio.sleep(delay)
            now = time.monotonic()
            if now - self._checked_at >= delay:  # the writer did not check meanwhile
                try:
                    await self._on_writer(self.check)
                except Exception as exc:  # noqa: BLE001 - the journal closing; the poll remains
                    log.debug("data_version check failed: %r", exc)
                    return
            quiet = now - self._written_at
            if quiet >= SETTLE:
                return
            delay = MIN_INTERVAL if quiet < delay else min(delay * 2, SETTLE)


def _drain(fd: int) -> None:
    """Read what an inotify descriptor holds; what it says does not matter (one file)."""
    with contextlib.suppress(OSError):  # BlockingIOError: nothing (more) to read
        while len(os.read(fd, 4096)) == 4096:
            pass
