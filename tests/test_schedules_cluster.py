"""Once per tick across a cluster on one PostgreSQL: every node runs a Scheduler, and each
tick of a schedule still enqueues exactly one task, with three real node processes, and with
three nodes whose clocks disagree by most of a second.
"""

from __future__ import annotations

import collections
import itertools
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nodes import Gates, make_registry, node_config
from procs import Server, api, until

from actorq.journal.postgres import split_url
from actorq.runtime import Runtime
from actorq.schedules import parse_schedule
from actorq.wire import posix

pytestmark = [pytest.mark.postgres]

TICKS = 6  # the schedule runs every second for about this many seconds


async def firings(postgres_url: str, name: str) -> tuple[list[float], list[str], list[str]]:
    """From the database itself: the ticks of the tasks schedule ``name`` enqueued (in order),
    the nodes whose journal events fired them, and the tasks the fired events name."""
    dsn, schema = split_url(postgres_url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": str(schema)})
    try:
        rows = await conn.fetch("SELECT metadata FROM tasks")
        fired = await conn.fetch(
            "SELECT node, data FROM journal WHERE task_id = $1 AND kind = 'schedule_fired' "
            "ORDER BY seq",
            "schedule:" + name,
        )
    finally:
        await conn.close()
    metas = [json.loads(r["metadata"]) for r in rows]
    ticks = sorted(posix(m["tick"]) for m in metas if m.get("schedule") == name)
    return ticks, [r["node"] for r in fired], [json.loads(r["data"])["task_id"] for r in fired]


def assert_one_task_per_tick(ticks: list[float], fired_tasks: list[str]) -> None:
    assert len(ticks) >= TICKS
    assert len(set(ticks)) == len(ticks), "a tick enqueued two tasks"
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(ticks)]
    assert gaps == [1.0] * len(gaps), f"ticks missed or doubled: {gaps}"
    assert len(fired_tasks) == len(ticks) == len(set(fired_tasks))


@pytest.mark.slow
async def test_three_node_processes_fire_each_tick_once(
    postgres_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    common = ("--database-url", postgres_url, "--concurrency", "2")
    nodes = [Server.command(tmp_path, "serve", f"n{i}", *common) for i in range(3)]
    servers.extend(nodes)
    for node in nodes:
        await node.ready()
    body = {"name": "pulse", "every": 1, "task": {"type": "echo", "payload": {"n": 1}}}
    created = await api("POST", f"{nodes[0].url}/api/v1/schedules", body)
    started = time.monotonic()

    async def enough() -> bool:
        ticks, _, _ = await firings(postgres_url, "pulse")
        return len(ticks) >= TICKS

    await until(enough, 30)
    for node in nodes:  # every node up all along
        assert node.proc.poll() is None
    await api("POST", f"{nodes[1].url}/api/v1/schedules/pulse/pause")
    elapsed = time.monotonic() - started
    ticks, by, fired_tasks = await firings(postgres_url, "pulse")
    assert_one_task_per_tick(ticks, fired_tasks)
    assert ticks[0] == posix(created["next_run_at"])
    shown = await api("GET", f"{nodes[2].url}/api/v1/schedules/pulse")
    assert shown["fired"] == len(ticks)
    print(f"\n3 nodes, every 1 s for {elapsed:.1f} s: {len(ticks)} ticks, {len(ticks)} tasks, "
          f"fired by {dict(collections.Counter(by))}")  # fmt: skip


class Skewed:
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_nodes_whose_clocks_disagree_still_fire_each_tick_once(postgres_url: str) -> None:
    """Clocks 0.4 s behind, right and 0.4 s ahead: the node ahead fires most ticks early by
    the others' clocks, and no other node fires them again."""
    runtimes: list[Runtime] = []
    try:
        for i, offset in enumerate((-0.4, 0.0, 0.4)):
            config = node_config(postgres_url, node=f"skew{i}", poll_seconds=0.2)
            runtime = Runtime(config, make_registry(Gates()), clock=Skewed(offset))
            await runtime.start()
            runtimes.append(runtime)
        body: dict[str, Any] = {"name": "skewed", "every": 1, "task": {"type": "echo"}}
        await runtimes[1].schedules.create(parse_schedule(body, runtimes[1].registry, time.time()))

        async def enough() -> bool:
            ticks, _, _ = await firings(postgres_url, "skewed")
            return len(ticks) >= TICKS

        await until(enough, 30)
        await runtimes[0].schedules.set_paused("skewed", True)
    finally:
        for runtime in runtimes:
            await runtime.stop()
    ticks, by, fired_tasks = await firings(postgres_url, "skewed")
    assert_one_task_per_tick(ticks, fired_tasks)
    print(f"\nclocks -0.4/0/+0.4 s: {len(ticks)} ticks, fired by {dict(collections.Counter(by))}")
