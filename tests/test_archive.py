"""Archives: sealed ranges of tasks gone from the projection move to segment files, the
database forgets them through the one path its append-only rule allows, and verify, replay
and export given the archive see one continuous, verified history. Both backends."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path

import pytest
from test_seals import _with_journal, sql

from actorq.actors.sealer import seal_all
from actorq.cli import main
from actorq.journal.base import Expire, Journal, PurgeQueue, Submit
from actorq.model import NewTask, TaskState

GONE, LIVE = 9, 3


def build(url: str) -> None:
    """9 tasks submitted, cancelled and expired (gone from the projection), then 3 live ones,
    each stage sealed: 9 + 9 + 9 rows of gone tasks, 3 of live ones."""

    async def body(journal: Journal) -> None:
        for start in range(0, GONE, 3):
            batch = [NewTask("echo", {"i": i}) for i in range(start, start + 3)]
            (out,) = await journal.run([Submit(batch, time.time(), "test")])
            out.unwrap()
            await seal_all(journal, None, "test")
        now = time.time()
        (out,) = await journal.run([PurgeQueue("default", [TaskState.QUEUED], now, "t", "old")])
        assert len(out.unwrap()) == GONE
        await seal_all(journal, None, "test")
        (out,) = await journal.run([Expire(now + 100, "test", retention=1.0)])
        assert len(out.unwrap()) == GONE
        await seal_all(journal, None, "test")
        batch = [NewTask("echo", {"live": i}) for i in range(LIVE)]
        (out,) = await journal.run([Submit(batch, time.time(), "test")])
        out.unwrap()
        await seal_all(journal, None, "test")

    asyncio.run(_with_journal(url, body))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_archived_history_stays_whole_and_verified(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build(database_url)
    db = ("--database-url", database_url)
    folder = tmp_path / "archive"
    code, out = cli(capsys, "journal", "archive", *db, "--before", "2100-01-01T00:00:00Z",
                    "--to", str(folder))  # fmt: skip
    assert code == 0
    moved = json.loads(out)
    assert moved["rows"] == 3 * GONE
    assert moved["archived_through"] == 3 * GONE
    assert [p.name for p in folder.iterdir()] == moved["segments"]
    assert len(sql(database_url, "SELECT seq FROM journal")) == LIVE  # the database is bounded

    code, out = cli(capsys, "journal", "verify", *db)
    report = json.loads(out)
    assert code == 0, report
    assert report["seals"]["unchecked_rows"] == 3 * GONE
    assert report["matches"] is None  # the projection needs the archived history

    archive = ("--archive", str(folder))
    code, out = cli(capsys, "journal", "verify", *db, *archive)
    report = json.loads(out)
    assert code == 0, report
    assert report["matches"] is True
    assert report["seals"]["sealed_rows"] == 3 * GONE + LIVE
    assert report["seals"]["unchecked_rows"] == 0

    assert cli(capsys, "journal", "replay", *db, *archive)[0] == 0
    code, out = cli(capsys, "journal", "export", *db, *archive)
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, 3 * GONE + LIVE + 1))
    assert cli(capsys, "journal", "export", *db)[0] == 2  # archived history, no archive given

    # Nothing more is archivable: the live tasks' range stays.
    code, out = cli(capsys, "journal", "archive", *db, "--before", "2100-01-01T00:00:00Z",
                    "--to", str(folder))  # fmt: skip
    assert json.loads(out)["rows"] == 0


def test_an_altered_segment_is_caught(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build(database_url)
    db = ("--database-url", database_url)
    folder = tmp_path / "archive"
    assert cli(capsys, "journal", "archive", *db, "--before", "2100-01-01T00:00:00Z",
               "--to", str(folder))[0] == 0  # fmt: skip
    (segment,) = folder.iterdir()
    lines = gzip.decompress(segment.read_bytes()).decode().splitlines()
    row = next(i for i, line in enumerate(lines) if '"row": [5,' in line)
    lines[row] = (
        lines[row].replace('"node": "test"', '"node": "forger"').replace('"test"', '"forger"')
    )
    segment.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    code, out = cli(capsys, "journal", "verify", *db, "--archive", str(folder))
    report = json.loads(out)
    assert code == 1
    assert report["seals"]["problem"]["kind"] == "altered"
    assert report["seals"]["problem"]["seq"] == 5


def test_archive_leaves_ranges_of_tasks_still_in_the_projection_and_recent_rows(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build(database_url)
    db = ("--database-url", database_url)
    code, out = cli(capsys, "journal", "archive", *db, "--before", "2000-01-01T00:00:00Z",
                    "--to", str(tmp_path / "a"))  # fmt: skip
    assert code == 0
    assert json.loads(out)["rows"] == 0  # every row is newer than the date
    assert len(sql(database_url, "SELECT seq FROM journal")) == 3 * GONE + LIVE
