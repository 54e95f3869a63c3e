"""Nodes across a cluster: two real `actorq serve` processes on one PostgreSQL. An order given
to node A (its API, or the CLI on the database) reaches node B: a pause stops B's claims while
A works on; a drain lets B's running task finish, then B's process exits 0; a node killed
with SIGKILL is marked gone after its lease and its task is re-queued and run by the other."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from procs import Server, api, until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LEASE = 3.0  # seconds: a heartbeat a second, a silent node gone after 3


@pytest.fixture
async def pair(
    postgres_url: str, tmp_path: Path, servers: list[Server], db: asyncpg.Connection
) -> tuple[Server, Server]:
    common = ("--database-url", postgres_url, "--concurrency", "2", "--lease-seconds", str(LEASE))
    a = Server.command(tmp_path, "serve", "node-a", *common)
    b = Server.command(tmp_path, "serve", "node-b", *common)
    servers.extend([a, b])
    await asyncio.gather(a.ready(), b.ready())

    async def both_up() -> bool:
        return int(await db.fetchval("SELECT count(*) FROM nodes WHERE gone_at IS NULL")) == 2

    await until(both_up, 30)
    return a, b


def cli(*argv: str) -> Any:
    """`actorq ...` as a process of its own; its JSON output."""
    done = subprocess.run([sys.executable, "-m", "actorq", *argv], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    import json

    return json.loads(done.stdout)


async def logged(server: Server, text: str, timeout: float) -> float:
    """Wait until ``text`` is in the server's log; when it was seen (time.time())."""

    async def seen() -> bool:
        return text in server.log.read_text()

    await until(seen, timeout)
    return time.time()


async def workers_of(db: asyncpg.Connection, queue: str) -> set[str]:
    rows = await db.fetch("SELECT worker FROM tasks WHERE queue = $1", queue)
    return {str(r[0]).split("/")[0] for r in rows}


async def all_succeeded(db: asyncpg.Connection, queue: str, n: int, timeout: float) -> None:
    async def done() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM tasks WHERE queue = $1 AND state = 'succeeded'", queue
        )
        return int(count) == n

    await until(done, timeout)


async def test_a_pause_of_b_through_a_stops_b_while_a_works_and_a_resume_on_the_db_restarts_it(
    pair: tuple[Server, Server], db: asyncpg.Connection, postgres_url: str
) -> None:
    a, b = pair
    asked = time.time()
    shown = await api("POST", f"{a.url}/api/v1/nodes/node-b/pause")
    assert (shown["id"], shown["paused"], shown["status"]) == ("node-b", True, "live")
    obeyed = await logged(b, "node node-b paused by an operator", 10)
    # By NOTIFY, not by its next heartbeat (a second away at most): the figure prints (-s).
    print(f"\nnode-b obeyed a pause asked on node-a {obeyed - asked:.3f}s later (NOTIFY)")
    listed = await asyncio.to_thread(cli, "nodes", "list", "--url", a.url)
    assert {n["id"]: n["paused"] for n in listed} == {"node-a": False, "node-b": True}

    await api("POST", f"{a.url}/api/v1/tasks",
              [{"type": "sleep", "payload": {"seconds": 0.05}, "queue": "p"}] * 20)  # fmt: skip
    await all_succeeded(db, "p", 20, 30)
    assert await workers_of(db, "p") == {"node-a"}
    one = await asyncio.to_thread(cli, "nodes", "list", "node-b", "--database-url", postgres_url)
    assert (one["id"], one["paused"]) == ("node-b", True)

    shown = await asyncio.to_thread(cli, "nodes", "resume", "node-b", "--database-url",
                                    postgres_url)  # fmt: skip
    assert shown["paused"] is False
    await logged(b, "node node-b resumed by an operator", 10)
    # Both nodes take work again: 2 workers each, 8 tasks of 0.5 s submitted at once.
    await api("POST", f"{a.url}/api/v1/tasks",
              [{"type": "sleep", "payload": {"seconds": 0.5}, "queue": "r"}] * 8)  # fmt: skip
    await all_succeeded(db, "r", 8, 30)
    assert await workers_of(db, "r") == {"node-a", "node-b"}


async def test_a_drained_node_finishes_its_running_task_then_its_process_exits_0(
    pair: tuple[Server, Server], db: asyncpg.Connection
) -> None:
    a, b = pair
    await api("POST", f"{a.url}/api/v1/nodes/node-a/pause")  # the task must land on B
    task = await api(
        "POST",
        f"{a.url}/api/v1/tasks",
        {"type": "sleep", "payload": {"seconds": 2.0}, "queue": "d"},
    )

    async def running_on_b() -> bool:
        row = await db.fetchrow("SELECT state, worker FROM tasks WHERE id = $1", task["id"])
        return row["state"] == "running" and str(row["worker"]).startswith("node-b/")

    await until(running_on_b, 20)
    shown = await api("POST", f"{a.url}/api/v1/nodes/node-b/drain")
    assert shown["draining"] is True
    await logged(b, "node node-b drains", 10)
    assert b.proc.poll() is None  # its task still runs
    code = await asyncio.to_thread(b.proc.wait, 30)
    assert code == 0
    state = await db.fetchval("SELECT state FROM tasks WHERE id = $1", task["id"])
    assert state == "succeeded"
    gone = await api("GET", f"{a.url}/api/v1/nodes/node-b")
    assert gone["status"] == "gone"
    assert gone["gone_at"] is not None  # it said goodbye


async def test_a_node_killed_is_marked_gone_after_its_lease_and_its_task_runs_elsewhere(
    pair: tuple[Server, Server], db: asyncpg.Connection
) -> None:
    a, b = pair
    await api("POST", f"{a.url}/api/v1/nodes/node-a/pause")
    task = await api(
        "POST",
        f"{a.url}/api/v1/tasks",
        {"type": "sleep", "payload": {"seconds": 1.0}, "queue": "k"},
    )

    async def running_on_b() -> bool:
        row = await db.fetchrow("SELECT state, worker FROM tasks WHERE id = $1", task["id"])
        return row["state"] == "running" and str(row["worker"]).startswith("node-b/")

    await until(running_on_b, 20)

    async def b_lists_its_task() -> bool:  # its heartbeat says what it holds
        return task["id"] in (await api("GET", f"{a.url}/api/v1/nodes/node-b"))["running"]

    await until(b_lists_its_task, 10)
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    killed = time.time()
    await api("POST", f"{a.url}/api/v1/nodes/node-a/resume")

    async def b_gone() -> bool:
        return (await api("GET", f"{a.url}/api/v1/nodes/node-b"))["status"] == "gone"

    await until(b_gone, 3 * LEASE)
    print(f"\nnode-b killed: listed gone {time.time() - killed:.2f}s later (lease {LEASE:g}s)")
    shown = await api("GET", f"{a.url}/api/v1/nodes/node-b")
    assert (shown["gone_at"], shown["running"]) == (None, [])  # no goodbye: gone by silence
    body = await api("GET", f"{a.url}/api/v1/nodes")
    assert {n["id"]: n["status"] for n in body["nodes"]} == {"node-a": "live", "node-b": "gone"}
    await all_succeeded(db, "k", 1, 30)
    worker = await db.fetchval("SELECT worker FROM tasks WHERE id = $1", task["id"])
    assert str(worker).startswith("node-a/")
    kinds = [r[0] for r in await db.fetch(
        "SELECT kind FROM journal WHERE task_id = $1 ORDER BY seq", task["id"])]  # fmt: skip
    assert "lease_expired" in kinds
