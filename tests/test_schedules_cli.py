"""``actorq schedules``: the same commands on the database and through a running server, with
a real ``actorq serve`` process, on each backend."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from procs import Server

from actorq.cli import main
from actorq.journal import journal_from_url


async def actorq(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """The exit code, and the JSON printed (on success) or the error line (on failure)."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else err.strip()


@pytest.mark.slow
async def test_schedules_commands_work_on_the_database_and_through_a_server(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], servers: list[Server]
) -> None:
    url = database_url
    server = Server(url, tmp_path)
    servers.append(server)
    await server.ready()
    db, http = ("--database-url", url), ("--url", server.url)

    code, tick = await actorq(capsys, "schedules", "add", "tick", "--every", "3600",
                              "--type", "echo", "--payload", '{"a": 1}', *http)  # fmt: skip
    assert code == 0
    assert (tick["name"], tick["every"], tick["task"]["payload"]) == ("tick", 3600.0, {"a": 1})
    # On the database: the type is known from the live node serving it.
    code, nightly = await actorq(capsys, "schedules", "add", "nightly", "--cron", "0 3 * * *",
                                 "--timezone", "Asia/Tokyo", "--misfire", "run_once",
                                 "--type", "echo", *db)  # fmt: skip
    assert code == 0
    assert nightly["next_run_at"].endswith("T18:00:00.000000Z")  # 03:00 in Tokyo
    assert nightly["misfire"] == "run_once"

    for target in (db, http):
        code, listed = await actorq(capsys, "schedules", "list", *target)
        assert code == 0
        assert [s["name"] for s in listed["schedules"]] == ["nightly", "tick"]

    code, paused = await actorq(capsys, "schedules", "pause", "tick", *db)
    assert (code, paused["paused"], paused["next_run_at"]) == (0, True, None)
    code, shown = await actorq(capsys, "schedules", "list", *http)  # the server reads it too
    assert shown["schedules"][1]["paused"] is True
    code, resumed = await actorq(capsys, "schedules", "resume", "tick", *http)
    assert (code, resumed["paused"]) == (0, False)
    code, deleted = await actorq(capsys, "schedules", "delete", "nightly", *db)
    assert (code, deleted["name"]) == (0, "nightly")

    for target in (db, http):
        ghost = await actorq(capsys, "schedules", "delete", "ghost", *target)
        assert ghost == (1, "actorq: no schedule named 'ghost'")
        bad = ("schedules", "add", "x", "--cron", "99 * * * *", "--type", "echo", *target)
        code, why = await actorq(capsys, *bad)
        assert code == 2
        assert "field 'cron' must be a cron expression" in why
        again = ("schedules", "add", "tick", "--every", "5", "--type", "echo", *target)
        assert await actorq(capsys, *again) == (1, "actorq: a schedule named 'tick' exists already")

    journal = journal_from_url(url)
    await journal.open()
    try:
        history = await journal.history("schedule:tick")
        names = [s.name for s in await journal.schedules()]
    finally:
        await journal.close()
    assert names == ["tick"]
    assert [e.kind.value for e in history] == ["schedule_saved"] * 3
    # who did what: the pause on the database names the command line, the rest the server
    assert history[1].node == f"cli:{getpass.getuser()}@{socket.gethostname()}"
    assert not history[0].node.startswith("cli:")
    assert history[2].node == history[0].node
