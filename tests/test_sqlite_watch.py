"""A SQLite node hears other processes' commits to its file (inotify on the write-ahead log,
filtered by the writer connection's data_version), and not its own."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest
from procs import Server

import actorq
from actorq.journal import sqlite_watch
from actorq.journal.base import Notice, Submit
from actorq.journal.sqlite import SqliteJournal
from actorq.model import NewTask, TaskState

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")


async def _submit(journal: SqliteJournal, n: int = 1) -> None:
    (outcome,) = await journal.run([Submit([NewTask("echo") for _ in range(n)], time.time(), "t")])
    outcome.unwrap()


async def test_another_connections_commit_is_heard_and_our_own_are_not(tmp_path: Path) -> None:
    path = str(tmp_path / "w.db")
    ours, theirs = SqliteJournal(path), SqliteJournal(path)
    await ours.open()
    await theirs.open()
    heard: list[Notice] = []
    woke = asyncio.Event()

    def on_notice(notice: Notice) -> None:
        heard.append(notice)
        woke.set()

    try:
        await ours.subscribe(on_notice)
        for _ in range(20):  # our own commits move the log, but they are no news
            await _submit(ours)
        await asyncio.sleep(0.3)
        assert heard == []

        await _submit(theirs)  # another connection: as another process would
        await asyncio.wait_for(woke.wait(), 5)
        assert heard == [Notice("ready")]

        woke.clear()
        await _submit(ours, 5)
        await _submit(theirs)
        await asyncio.wait_for(woke.wait(), 5)
        assert len(heard) == 2
    finally:
        await theirs.close()
        await ours.close()


async def test_a_worker_process_picks_up_an_enqueue_from_another_process_without_polling(
    tmp_path: Path,
) -> None:
    db = tmp_path / "edge.db"
    url = f"sqlite:///{db}"
    async with actorq.App(database_url=url):
        pass  # the schema, before the worker opens it
    # The fallback poll is an hour: only hearing the commit can wake the worker.
    worker = Server.command(tmp_path, "worker", "w1", "--database-url", url, poll_seconds=3600)
    try:
        watcher = SqliteJournal(str(db))
        await watcher.open()
        try:  # the worker is up once its node record is
            for _ in range(200):
                if await watcher.live_nodes(0):
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail(worker.log.read_text())
        finally:
            await watcher.close()
        async with actorq.App(database_url=url) as app:
            waits = []
            for i in range(5):
                at = time.time()
                task = await app.enqueue("echo", {"i": i})
                for _ in range(400):
                    task = await app.get(task.id)
                    if task.state is TaskState.SUCCEEDED:
                        break
                    await asyncio.sleep(0.005)
                assert task.state is TaskState.SUCCEEDED, worker.log.read_text()
                assert task.started_at is not None
                waits.append(task.started_at - at)
                await asyncio.sleep(0.05)  # the worker idles again
        assert max(waits) < 2.0, waits  # vs the hour-long poll
    finally:
        worker.stop()


async def test_a_commit_rung_on_the_bell_is_heard_without_the_logs_series(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The log's series waits an hour before its first check: only the bell can be heard.
    monkeypatch.setattr(sqlite_watch, "MIN_INTERVAL", 3600.0)
    path = str(tmp_path / "b.db")
    ours, theirs = SqliteJournal(path), SqliteJournal(path)
    await ours.open()
    await theirs.open()
    woke = asyncio.Event()
    try:
        await ours.subscribe(lambda notice: woke.set())
        await asyncio.sleep(0.05)  # past the writer's rest after opening
        silent = theirs._bell
        theirs._bell = None  # a writer that does not ring: nothing heard for now
        await _submit(theirs)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(woke.wait(), 0.5)
        theirs._bell = silent
        await _submit(theirs)  # rings after its commit
        await asyncio.wait_for(woke.wait(), 2)
        assert os.path.exists(sqlite_watch.bell_path(path))  # noqa: ASYNC240
    finally:
        await theirs.close()
        await ours.close()
