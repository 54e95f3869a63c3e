"""``actorq tasks ...`` and ``actorq dead-letters ...`` on the database and through a running
server (``--url``), on both backends."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from procs import Server
from test_dead_letters import dead_tasks

from actorq.cli import main
from actorq.journal import journal_from_url
from actorq.model import EventKind, Task, TaskState


async def actorq(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    """Run the command line; its exit code must be ``code``; its output as JSON (or the
    error text when it failed)."""
    got = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    assert got == code, (out, err)
    return json.loads(out) if code == 0 else err


async def make_dead(url: str, n: int, **kw: Any) -> list[Task]:
    journal = journal_from_url(url)
    await journal.open()
    try:
        return await dead_tasks(journal, n, **kw)
    finally:
        await journal.close()


async def history(url: str, task_id: str) -> list[Any]:
    journal = journal_from_url(url)
    await journal.open()
    try:
        return await journal.history(task_id)
    finally:
        await journal.close()


async def test_dead_letters_and_tasks_on_the_database(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ("--database-url", database_url)
    a = await make_dead(database_url, 2, queue="a")
    b = await make_dead(database_url, 1, queue="b")
    listed = await actorq(capsys, "dead-letters", "list", *db)
    assert {t["id"] for t in listed["dead_letters"]} == {t.id for t in [*a, *b]}
    assert all(t["error"].startswith("boom") and t["attempt"] == 1 for t in listed["dead_letters"])
    page = await actorq(capsys, "dead-letters", "list", "--queue", "a", "--limit", "1", *db)
    assert len(page["dead_letters"]) == 1
    assert page["next_cursor"] is not None

    assert await actorq(capsys, "dead-letters", "retry", "--id", a[0].id, *db) == {"retried": 1}
    retried = (await history(database_url, a[0].id))[-1]
    assert retried.kind is EventKind.RETRIED
    assert retried.data["by"] == f"cli:{getpass.getuser()}@{socket.gethostname()}"
    shown = await actorq(capsys, "tasks", "get", a[0].id, *db)
    assert shown["state"] == "queued"
    assert shown["attempt"] == 0

    err = await actorq(capsys, "dead-letters", "purge", *db, code=2)
    assert "--all" in err
    assert await actorq(capsys, "dead-letters", "purge", "--queue", "a", *db) == {"purged": 1}
    err = await actorq(capsys, "tasks", "get", a[1].id, *db, code=1)
    assert "purged" in err
    assert await actorq(capsys, "dead-letters", "purge", "--all", *db) == {"purged": 1}
    assert (await actorq(capsys, "dead-letters", "list", *db))["dead_letters"] == []

    queued = await actorq(capsys, "tasks", "list", "--state", "queued", *db)
    assert [t["id"] for t in queued["tasks"]] == [a[0].id]
    cancelled = await actorq(capsys, "tasks", "cancel", a[0].id, *db)
    assert cancelled["state"] == "cancelled"
    err = await actorq(capsys, "tasks", "cancel", a[0].id, *db, code=1)
    assert "already cancelled" in err
    again = await actorq(capsys, "tasks", "retry", a[0].id, *db)
    assert again["state"] == "queued"
    err = await actorq(capsys, "tasks", "get", "no-such-task", *db, code=1)
    assert "no task" in err
    await actorq(capsys, "tasks", "list", "--limit", "0", *db, code=2)
    verify = await actorq(capsys, "journal", "verify", *db)
    assert verify["matches"] is True


@pytest.mark.slow
async def test_dead_letters_and_tasks_through_a_running_server(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], servers: list[Server]
) -> None:
    # Now, not the helper's 1970: the server's retention sweeper would expire them at once.
    dead = await make_dead(database_url, 3, type_="never_served", at=time.time())
    server = Server(database_url, tmp_path)
    servers.append(server)
    await server.ready()
    url = ("--url", server.url)
    listed = await actorq(capsys, "dead-letters", "list", *url)
    assert {t["id"] for t in listed["dead_letters"]} == {t.id for t in dead}
    assert await actorq(capsys, "dead-letters", "retry", "--id", dead[0].id, *url) == {"retried": 1}
    by = (await history(database_url, dead[0].id))[-1].data["by"]
    assert by == "api:127.0.0.1"  # the server records the client it served
    shown = await actorq(capsys, "tasks", "get", dead[0].id, *url)
    assert shown["state"] in (TaskState.QUEUED, TaskState.CLAIMED)  # no node serves its type
    cancelled = await actorq(capsys, "tasks", "cancel", dead[0].id, *url)
    assert cancelled["state"] == "cancelled"
    assert (await actorq(capsys, "tasks", "retry", dead[0].id, *url))["state"] == "queued"
    assert await actorq(capsys, "dead-letters", "purge", "--all", *url) == {"purged": 2}
    err = await actorq(capsys, "tasks", "get", dead[1].id, *url, code=1)
    assert "purged" in err
    page = await actorq(capsys, "tasks", "list", "--limit", "5", *url)
    assert [t["id"] for t in page["tasks"]] == [dead[0].id]
