"""`actorq serve` as a real process: crash recovery after SIGKILL, graceful SIGTERM, --app.

These tests run the command line exactly as a user would, on a real SQLite file or a real
PostgreSQL.
"""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import aiohttp
import pytest
from procs import Server, api, until

from actorq import audit
from actorq.journal import journal_from_url

pytestmark = pytest.mark.slow


async def open_states(server: Server) -> dict[str, int]:
    stats = await api("GET", f"{server.url}/api/v1/stats")
    tasks: dict[str, int] = stats["tasks"]
    return tasks


async def test_sigkill_mid_run_loses_nothing_and_reruns_what_was_running(
    database_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    db = database_url
    first = Server(db, tmp_path, "--concurrency", "4", "--lease-seconds", "1.5")
    servers.append(first)
    await first.ready()
    quick = [{"type": "sleep", "payload": {"seconds": 0.05}} for _ in range(150)]
    long = [{"type": "sleep", "payload": {"seconds": 0.5}, "priority": 9} for _ in range(4)]
    later = [{"type": "echo", "payload": i, "delay": 1.0} for i in range(20)]
    ids = [
        t["id"]
        for batch in (long, quick, later)
        for t in (await api("POST", f"{first.url}/api/v1/tasks", batch))["tasks"]
    ]

    async def a_long_one_running() -> bool:
        # A long task runs 0.5 s: killed now, its handler is surely mid-run, its start
        # journaled (a start is written within 10 ms of it).
        for task_id in ids[: len(long)]:
            task = await api("GET", f"{first.url}/api/v1/tasks/{task_id}")
            if task["state"] == "running":
                return True
        return False

    await until(a_long_one_running, 20)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)

    journal = journal_from_url(db)
    await journal.open()
    try:
        at_kill = {t.id: t.state.value async for t in journal.tasks()}
    finally:
        await journal.close()
    assert set(at_kill) == set(ids), "every acknowledged task is in the journal"
    running_at_kill = [tid for tid, state in at_kill.items() if state == "running"]
    assert running_at_kill

    second = Server(db, tmp_path, "--concurrency", "4", "--lease-seconds", "1.5")
    servers.append(second)
    await second.ready()

    async def all_done() -> bool:
        s = await open_states(second)
        return s["queued"] + s["scheduled"] + s["claimed"] + s["running"] == 0

    await until(all_done, 60)
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(20) == 0

    journal = journal_from_url(db)
    await journal.open()
    try:
        final = {t.id: t async for t in journal.tasks()}
        assert {t.state.value for t in final.values()} == {"succeeded"}
        assert len(final) == len(ids)
        for tid in running_at_kill:
            kinds = [e.kind.value for e in await journal.history(tid)]
            assert "lease_expired" in kinds, kinds
            assert kinds.count("claimed") == 2
            assert final[tid].attempt == 2
        report = await audit.verify_projection(journal)
        assert report.matches, report
    finally:
        await journal.close()


async def test_sigterm_finishes_short_tasks_and_releases_long_ones_for_the_next_start(
    database_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    db = database_url
    first = Server(db, tmp_path, "--concurrency", "4", "--shutdown-grace", "1.5")
    servers.append(first)
    await first.ready()
    body = [{"type": "sleep", "payload": {"seconds": 0.3}} for _ in range(2)] + [
        {"type": "sleep", "payload": {"seconds": 4}} for _ in range(2)
    ]
    ids = [t["id"] for t in (await api("POST", f"{first.url}/api/v1/tasks", body))["tasks"]]

    async def four_running() -> bool:
        return (await open_states(first))["running"] == 4

    await until(four_running, 20)
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(15) == 0

    journal = journal_from_url(db)
    await journal.open()
    try:
        states = [(await journal.get(tid)).state.value for tid in ids]
        assert states == ["succeeded", "succeeded", "queued", "queued"]
        for tid in ids[2:]:
            kinds = [e.kind.value for e in await journal.history(tid)]
            assert kinds[-1] == "released"
            assert (await journal.get(tid)).attempt == 0
    finally:
        await journal.close()

    second = Server(db, tmp_path, "--concurrency", "4")
    servers.append(second)
    await second.ready()

    async def all_succeeded() -> bool:
        return (await open_states(second))["succeeded"] == 4

    await until(all_succeeded, 30)


async def test_serve_runs_the_users_own_app_module(tmp_path: Path, servers: list[Server]) -> None:
    (tmp_path / "myjobs.py").write_text(
        textwrap.dedent(
            """
            import actorq

            app = actorq.App(concurrency=2)

            @app.task("add", max_attempts=2)
            def add(payload):
                return payload["a"] + payload["b"]

            @app.task("shout")
            async def shout(payload, ctx):
                return {"text": payload.upper(), "attempt": ctx.attempt}
            """
        )
    )
    server = Server(tmp_path / "app.db", tmp_path, "--app", "myjobs:app")
    servers.append(server)
    await server.ready()
    created = await api(
        "POST",
        f"{server.url}/api/v1/tasks",
        [
            {"type": "add", "payload": {"a": 2, "b": 3}},
            {"type": "shout", "payload": "hi"},
        ],
    )
    results = []
    for task in created["tasks"]:
        url = f"{server.url}/api/v1/tasks/{task['id']}"

        async def done(url: str = url) -> bool:
            return (await api("GET", url))["state"] == "succeeded"

        await until(done, 20)
        results.append((await api("GET", url))["result"])
    assert results == [5, {"text": "HI", "attempt": 1}]
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{server.url}/api/v1/tasks", json={"type": "echo"})
        assert r.status == 422, "built-in examples are not loaded with --app"


async def test_a_taken_port_is_a_clear_error_and_a_clean_exit(
    tmp_path: Path, servers: list[Server]
) -> None:
    first = Server(tmp_path / "a.db", tmp_path)
    servers.append(first)
    await first.ready()
    second = Server(tmp_path / "b.db", tmp_path, "--port", str(first.port))
    servers.append(second)
    assert second.proc.wait(20) == 1
    assert "cannot listen on 127.0.0.1" in second.log.read_text()


@pytest.mark.parametrize("choice", [None, "asyncio"])
async def test_a_node_runs_on_uvloop_unless_told_otherwise(
    tmp_path: Path, servers: list[Server], monkeypatch: pytest.MonkeyPatch, choice: str | None
) -> None:
    if choice is not None:
        monkeypatch.setenv("ACTORQ_EVENT_LOOP", choice)
    server = Server(tmp_path / "loop.db", tmp_path)
    servers.append(server)
    await server.ready()
    created = await api("POST", f"{server.url}/api/v1/tasks", {"type": "echo", "payload": 7})
    url = f"{server.url}/api/v1/tasks/{created['id']}"

    async def done() -> bool:
        return (await api("GET", url))["state"] == "succeeded"

    await until(done, 20)
    assert (await api("GET", url))["result"] == 7
    expected = choice or "uvloop"
    assert f"{expected} event loop" in server.log.read_text()
