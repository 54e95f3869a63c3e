"""The Sealer: every node seals the journal as events arrive and when it stops; the head seal
and the last verify over HTTP; two real nodes sealing one PostgreSQL while both write."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config
from procs import Server, api, until

from actorq.audit import verify_seals
from actorq.cli import main
from actorq.http.app import make_app
from actorq.journal import journal_from_url
from actorq.model import NewTask
from actorq.runtime import Runtime


async def _sealed_through(runtime: Runtime) -> int:
    seal = await runtime.journal.seal_head()
    return 0 if seal is None else seal.last_seq


async def test_a_node_seals_while_events_arrive_and_all_of_it_when_it_stops(
    database_url: str, gates: Gates
) -> None:
    runtime = Runtime(node_config(database_url, seal_seconds=0.05), make_registry(gates))
    await runtime.start()
    try:
        first = await runtime.submit([NewTask("echo", {"n": i}) for i in range(20)])
        for task in first:
            await runtime.wait_for(task.id, timeout=15)
        top = (await runtime.journal.head()).journal_seq

        async def caught_up() -> bool:
            return await _sealed_through(runtime) >= top

        await until(caught_up, 10)  # sealed while the node runs, within a few intervals
        last = await runtime.submit([NewTask("echo", {"n": 99})])
        await runtime.wait_for(last[0].id, timeout=15)
    finally:
        await runtime.stop()

    journal = journal_from_url(database_url)
    await journal.open()
    try:
        report = await verify_seals(journal, None)
        assert report.ok, report
        assert report.unsealed_rows == 0  # the stop sealed what the last task wrote
        assert report.head is not None
        assert report.head.last_seq == (await journal.head()).journal_seq
    finally:
        await journal.close()


async def test_head_seal_and_last_verify_over_http(
    node: Runtime, aiohttp_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client: TestClient = await aiohttp_client(make_app(node))
    (task,) = await node.submit([NewTask("echo", {})])
    await node.wait_for(task.id, timeout=15)

    async def sealed() -> bool:
        return await _sealed_through(node) >= (await node.journal.head()).journal_seq

    await until(sealed, 10)
    head = await (await client.get("/api/v1/journal/head")).json()
    seal = await node.journal.seal_head()
    assert seal is not None
    assert head["seal"]["seq"] == seal.last_seq
    assert head["seal"]["hash"] == seal.hash
    assert head["verification"] is None

    url = node.config.database_url
    assert await asyncio.to_thread(main, ["journal", "verify", "--database-url", url]) == 0
    head = await (await client.get("/api/v1/journal/head")).json()
    assert head["verification"]["ok"] is True
    assert head["verification"]["problem"] is None


@pytest.mark.postgres
@pytest.mark.slow
async def test_two_nodes_writing_one_postgres_at_once_leave_a_journal_that_verifies(
    postgres_url: str,
    tmp_path: Path,
    servers: list[Server],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both nodes take seqs at once, so they commit out of order, and both seal every 0.1 s:
    a seal that covered a seq still in flight would find that row 'inserted' later."""
    monkeypatch.setenv("ACTORQ_SEAL_SECONDS", "0.1")
    common = ("--database-url", postgres_url, "--concurrency", "4")
    nodes = [Server.command(tmp_path, "serve", f"n{i}", *common) for i in range(2)]
    servers.extend(nodes)
    for server in nodes:
        await server.ready()

    async def submit(server: Server) -> list[str]:
        ids = []
        for _ in range(15):
            batch = [{"type": "echo", "payload": {"i": i}} for i in range(20)]
            answer = await api("POST", f"{server.url}/api/v1/tasks", batch)
            ids += [t["id"] for t in answer["tasks"]]
        return ids

    ids = [i for found in await asyncio.gather(*map(submit, nodes)) for i in found]

    async def all_done() -> bool:
        for task_id in ids[-5:] + ids[:5]:
            task = await api("GET", f"{nodes[0].url}/api/v1/tasks/{task_id}")
            if task["state"] != "succeeded":
                return False
        return True

    await until(all_done, 60)
    for server in nodes:  # an orderly stop: each seals what it can
        server.proc.send_signal(signal.SIGTERM)
    for server in nodes:
        assert server.proc.wait(30) == 0, server.log.read_text()

    capsys.readouterr()
    assert await asyncio.to_thread(main, ["journal", "verify", "--database-url", postgres_url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verified"] is True
    assert report["seals"]["unsealed_rows"] == 0
    assert report["seals"]["seals"] > 1


@pytest.mark.slow
async def test_a_worker_sealing_while_an_app_enqueues_into_the_same_sqlite_file(
    tmp_path: Path,
    servers: list[Server],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two processes append to one SQLite file; the worker seals every 50 ms between them."""
    import actorq

    monkeypatch.setenv("ACTORQ_SEAL_SECONDS", "0.05")
    url = f"sqlite:///{tmp_path}/shared.db"
    worker = Server.command(tmp_path, "worker", "w1", "--database-url", url)
    servers.append(worker)

    def registered() -> bool:
        import sqlite3

        db = sqlite3.connect(f"{tmp_path}/shared.db")
        try:
            return bool(db.execute("SELECT count(*) FROM nodes WHERE node = 'w1'").fetchone()[0])
        except sqlite3.OperationalError:  # no schema yet
            return False
        finally:
            db.close()

    async def worker_up() -> bool:
        return await asyncio.to_thread(registered)

    await until(worker_up, 30)  # the App enqueues only types some node serves
    async with actorq.App(database_url=url) as app:
        tasks = []
        for i in range(30):
            tasks += await app.enqueue_many([{"type": "echo", "payload": {"i": i, "j": j}}
                                             for j in range(5)])  # fmt: skip
            await asyncio.sleep(0.01)  # interleave with the worker's own commits
        ids = [t.id for t in tasks]

    def finished() -> int:
        import sqlite3

        db = sqlite3.connect(f"{tmp_path}/shared.db")
        try:
            marks = ",".join("?" * len(ids))
            sql = f"SELECT count(*) FROM tasks WHERE state = 'succeeded' AND id IN ({marks})"
            return int(db.execute(sql, ids).fetchone()[0])
        finally:
            db.close()

    async def all_done() -> bool:
        return await asyncio.to_thread(finished) == len(ids)

    await until(all_done, 60)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(30) == 0, worker.log.read_text()
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["journal", "verify", "--database-url", url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["seals"]["unsealed_rows"] == 0
    assert report["seals"]["seals"] > 1
