"""The SQLite journal's writer thread: calls run in order, off the event loop, and their
results and errors reach the caller."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from actorq.journal.sqlite import SqliteJournal
from actorq.journal.writer_thread import WriterThread


async def test_calls_run_in_order_on_one_thread_of_their_own() -> None:
    writer = WriterThread("test-writer")
    seen: list[tuple[int, str]] = []
    try:
        results = await asyncio.gather(
            *(writer.call(lambda i=i: seen.append((i, threading.current_thread().name)) or i)
              for i in range(50))
        )  # fmt: skip
    finally:
        writer.close()
    assert results == list(range(50))
    assert [i for i, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"test-writer"}


async def test_an_error_reaches_the_caller_and_the_thread_goes_on() -> None:
    writer = WriterThread("test-writer")

    def fail() -> None:
        raise ValueError("refused")

    try:
        with pytest.raises(ValueError, match="refused"):
            await writer.call(fail)
        assert await writer.call(lambda: 7) == 7
    finally:
        writer.close()


async def test_a_cancelled_caller_leaves_its_call_to_finish_and_later_calls_run() -> None:
    writer = WriterThread("test-writer")
    gate = threading.Event()
    finished = threading.Event()

    def slow() -> None:
        gate.wait(5)
        finished.set()

    try:
        waiting = asyncio.ensure_future(writer.call(slow))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.set()
        assert await writer.call(lambda: "next") == "next"
        assert finished.is_set()
    finally:
        writer.close()


async def test_closing_the_sqlite_journal_ends_its_writer_thread(tmp_path: Path) -> None:
    journal = SqliteJournal(str(tmp_path / "actorq.db"))
    await journal.open()
    assert "actorq-sqlite-writer" in {t.name for t in threading.enumerate()}
    await journal.close()
    assert "actorq-sqlite-writer" not in {t.name for t in threading.enumerate()}
