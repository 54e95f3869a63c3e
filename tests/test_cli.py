"""The command line on a real database: the journal tools (replay, verify, export, rebuild)
and ``submit``."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import actorq
from actorq.cli import main
from actorq.cli.base import USAGE
from actorq.config import Config
from actorq.journal import journal_from_url
from actorq.model import Task, TaskState
from actorq.retry import Backoff, RetryPolicy, policy_json
from actorq.runtime import Runtime
from actorq.tasks import Registry, TaskType


async def workload(url: str) -> tuple[list[str], float]:
    """Run a few tasks to completion; returns their ids and an instant before the last one."""
    app = actorq.App(database_url=url, concurrency=2, node="cli-test")

    @app.task("double")
    async def double(payload: int) -> int:
        return payload * 2

    async with app:
        await app.start()
        first = [await app.enqueue("double", i) for i in range(3)]
        for task in first:
            await app.wait_for(task.id, timeout=10)
        midway = (await app.get(first[-1].id)).updated_at + 1e-6
        last = await app.enqueue("double", 10, delay=60)
    return [t.id for t in [*first, last]], midway


def test_replay_reports_a_match_and_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    asyncio.run(workload(url))
    assert main(["journal", "replay", "--database-url", url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["matches"] is True
    assert report["tasks"] == 4
    assert report["events"] == 3 * 3 + 1  # submitted, claimed, succeeded (with its start)


def test_replay_until_shows_the_queue_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    ids, midway = asyncio.run(workload(url))
    until = dt.datetime.fromtimestamp(midway, dt.UTC).isoformat()
    assert main(["journal", "replay", "--database-url", url, "--until", until]) == 0
    then = json.loads(capsys.readouterr().out)
    assert then["states"] == {"succeeded": 3}, "the delayed task did not exist yet"
    assert main(["journal", "replay", "--database-url", url, "--until", until,
                 "--task", ids[0]]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["state"] == "succeeded"


def test_export_writes_every_event_as_json_lines(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    ids, _ = asyncio.run(workload(url))
    out = tmp_path / "journal.jsonl"
    assert main(["journal", "export", "--database-url", url, "-o", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 10
    assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)
    assert {e["task_id"] for e in lines} == set(ids)
    assert [e["kind"] for e in lines if e["task_id"] == ids[0]] == [
        "submitted", "claimed", "succeeded",
    ]  # fmt: skip


def test_verify_detects_a_tampered_projection_and_rebuild_repairs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "cli.db"
    url = f"sqlite:///{db}"
    ids, _ = asyncio.run(workload(url))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE tasks SET state = 'dead', result = '7' WHERE id = ?", (ids[0],))
    assert main(["journal", "verify", "--database-url", url]) == 1
    assert json.loads(capsys.readouterr().out)["different"] == [ids[0]]
    assert main(["journal", "rebuild", "--database-url", url]) == 0
    capsys.readouterr()
    assert main(["journal", "verify", "--database-url", url]) == 0


def test_the_journal_table_refuses_updates_and_deletes(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    asyncio.run(workload(f"sqlite:///{db}"))
    with sqlite3.connect(db) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE journal SET kind = 'succeeded'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM journal")


def write_app(folder: Path) -> str:
    """A module in ``folder`` whose App has a task type with defaults of its own; its spec."""
    name = f"cli_jobs_{uuid.uuid4().hex[:8]}"  # a fresh module: no other test's import cached
    (folder / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import actorq

            app = actorq.App()

            @app.task("report", priority=7, queue="reports", max_attempts=5, timeout=90)
            async def report(payload):
                return payload
            """
        )
    )
    return f"{name}:app"


def submit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["submit", *argv]) == 0
    task: dict[str, Any] = json.loads(capsys.readouterr().out)
    return task


async def stored(url: str, task_id: str) -> Task:
    journal = journal_from_url(url)
    await journal.open()
    try:
        return await journal.get(task_id)
    finally:
        await journal.close()


def test_submit_takes_the_task_types_own_defaults(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(tmp_path)  # also drops the import system's stale caches
    app = write_app(tmp_path)
    shown = submit(["report", "--app", app, "--database-url", database_url], capsys)
    task = asyncio.run(stored(database_url, shown["id"]))
    assert (task.priority, task.queue, task.max_attempts, task.timeout) == (7, "reports", 5, 90)
    assert (shown["priority"], shown["queue"]) == (7, "reports")


async def test_submit_takes_a_type_only_a_live_node_serves(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = Registry()
    registry.add(TaskType("crunch", _crunch, priority=4, queue="numbers", max_attempts=2))
    node = Runtime(Config(database_url=database_url, node="cruncher", concurrency=1), registry)
    await node.start()
    try:
        argv = ["submit", "crunch", "--database-url", database_url, "--payload", "3"]
        assert await asyncio.to_thread(main, argv) == 0  # this command loads no such type
        shown = json.loads(capsys.readouterr().out)
        assert (shown["priority"], shown["queue"], shown["max_attempts"]) == (4, "numbers", 2)
        done = await node.wait_for(shown["id"], timeout=10)
        assert (done.state, done.result) == (TaskState.SUCCEEDED, 9)
    finally:
        await node.stop()
    assert await asyncio.to_thread(main, argv) == 2, "no live node serves it any more"


async def _crunch(payload: int) -> int:
    return payload * payload


def test_submit_flags_override_the_task_types_defaults(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(tmp_path)  # also drops the import system's stale caches
    argv = ["report", "--app", write_app(tmp_path), "--database-url", database_url,
            "--payload", '{"n": 1}', "--priority", "0", "--queue", "urgent",
            "--max-attempts", "1", "--timeout", "2.5", "--delay", "3600",
            "--idempotency-key", "report-1"]  # fmt: skip
    task = asyncio.run(stored(database_url, submit(argv, capsys)["id"]))
    assert (task.priority, task.queue, task.max_attempts, task.timeout) == (0, "urgent", 1, 2.5)
    assert task.payload == {"n": 1}
    assert task.idempotency_key == "report-1"
    assert task.state == TaskState.SCHEDULED
    assert main(["submit", *argv]) == 1, "a live task holds the key"
    assert "report-1" in capsys.readouterr().err


def test_submit_retry_gives_the_task_its_policy_and_refuses_a_bad_one(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(tmp_path)  # also drops the import system's stale caches
    argv = ["report", "--app", write_app(tmp_path), "--database-url", database_url]
    shown = submit([*argv, "--retry", "fixed,base=5,jitter=0"], capsys)
    policy = RetryPolicy(Backoff.FIXED, base=5, jitter=0)
    assert shown["retry"] == policy_json(policy)
    assert asyncio.run(stored(database_url, shown["id"])).retry == policy
    shown = submit([*argv, "--retry", '{"backoff": "linear", "base": 2}'], capsys)
    assert shown["retry"] == policy_json(RetryPolicy(Backoff.LINEAR, base=2))
    assert main(["submit", *argv, "--retry", "fixed,base=-1"]) == USAGE
    assert "--retry 'fixed,base=-1': 'base' must be a number from 0 to 2592000" in (
        capsys.readouterr().err
    )


def test_app_may_be_a_plain_file_outside_the_import_path(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # How users of the one-file executable bring handlers: a file, not an installed module.
    folder = tmp_path / "handlers"
    folder.mkdir()
    name = write_app(folder).partition(":")[0]
    (folder / "my_handlers.py").write_text(f"from {name} import app as tasks\n")
    spec = f"{folder / 'my_handlers.py'}:tasks"
    shown = submit(["report", "--app", spec, "--database-url", database_url], capsys)
    assert (shown["priority"], shown["queue"]) == (7, "reports"), "its neighbour imported too"


def test_app_file_that_does_not_exist_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["submit", "echo", "--app", str(tmp_path / "nope.py"), "--database-url", "sqlite://"]
    assert main(argv) == 2
    assert "nope.py" in capsys.readouterr().err


async def test_stats_reads_the_database_or_a_running_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from procs import Server

    url = f"sqlite:///{tmp_path}/cli.db"
    await workload(url)  # three succeeded, one scheduled
    assert await asyncio.to_thread(main, ["stats", "--database-url", url]) == 0
    local = json.loads(capsys.readouterr().out)
    assert local["tasks"]["succeeded"] == 3
    assert local["tasks"]["scheduled"] == 1
    assert local["queues"]["default"]["succeeded"] == 3

    server = Server(tmp_path / "cli.db", tmp_path)
    try:
        await server.ready()
        assert await asyncio.to_thread(main, ["stats", "--url", server.url]) == 0
        remote = json.loads(capsys.readouterr().out)
    finally:
        server.stop()
    assert remote["tasks"] == local["tasks"]
    assert "finished_per_second_60s" in remote  # what only a node knows


async def test_queues_commands_work_on_the_database_and_through_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from procs import Server

    url = f"sqlite:///{tmp_path}/cli.db"
    await workload(url)

    async def acli(*argv: str) -> Any:
        code = await asyncio.to_thread(main, list(argv))
        out = capsys.readouterr()
        assert code == 0, out.err
        return json.loads(out.out)

    db = ("--database-url", url)
    assert [q["name"] for q in await acli("queues", "list", *db)] == ["default"]
    shown = await acli("queues", "set", "mail", "--concurrency", "2", "--rate-limit", "10/2",
                "--max-depth", "50", "--retention", "60", *db)  # fmt: skip
    assert shown["rate_limit"] == {"limit": 10, "period": 2.0}
    assert (shown["concurrency"], shown["max_depth"], shown["retention"]) == (2, 50, 60.0)
    assert (await acli("queues", "pause", "mail", *db))["paused"] is True
    cleared = await acli(
        "queues", "set", "mail", "--concurrency", "none", "--rate-limit", "none", *db
    )
    assert (cleared["concurrency"], cleared["rate_limit"]) == (None, None)
    assert await acli("queues", "purge", "default", "--states", "scheduled", *db) == {"purged": 1}
    # every change is the journal's, with who made it
    assert await asyncio.to_thread(main, ["journal", "verify", *db]) == 0
    capsys.readouterr()

    bad_commands = (
        ["set", "mail"],
        ["set", "mail", "--concurrency", "0"],
        ["set", "mail", "--rate-limit", "10"],
        ["purge", "mail", "--states", "done"],
    )
    for bad in bad_commands:
        assert await asyncio.to_thread(main, ["queues", *bad, *db]) == 2
        assert "actorq:" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["queues", "list", "nowhere", *db]) == 1

    server = Server(tmp_path / "cli.db", tmp_path)
    try:
        await server.ready()
        remote = ("--url", server.url)
        mail = await acli("queues", "list", "mail", *remote)
        assert mail["paused"] is True
        assert (await acli("queues", "resume", "mail", *remote))["paused"] is False
        assert (await acli("queues", "set", "mail", "--max-depth", "none", *remote))[
            "max_depth"
        ] is None
        assert await acli("queues", "purge", "mail", *remote) == {"purged": 0}
        assert {q["name"] for q in await acli("queues", "list", *remote)} == {"default", "mail"}
    finally:
        server.stop()
