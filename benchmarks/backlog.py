"""Large backlogs: does a deep queue slow the node down? One JSON line per run.

    python benchmarks/backlog.py [--n 1000000] [--small 10000] [--database-url URL]

Each run fills two fresh databases with queued ``echo`` tasks, ``--small`` and ``--n`` of them
(straight through the journal, in bulk, then sealed as the nodes that wrote them would have
sealed them as they went, and on PostgreSQL vacuumed, analyzed and checkpointed as a grown one
would have been), then for each: starts an ``actorq serve`` process (concurrency 10) and times
its start to ``/ready`` (the projection is there: a restart must not read the whole journal),
lets it drain ``--drain`` tasks and times the dequeue rate from the ``--warmup``-th task's end
to the ``--drain``-th's (from the tasks table: process start-up and the node's first moments,
which read counts over the whole table once, are not counted), and reads its peak resident
memory (VmHWM) from /proc. The figures to compare: ``drain_ratio`` (deep over shallow dequeue
rate, 1.0 = no slower) and the deep backlog's ``ready_s`` and ``rss_mb``;
``drain_from_start_per_s`` is the rate from the first task's start, start-up included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
from throughput import free_port, fresh_url, git_rev, until_ready

from actorq.actors.sealer import seal_all
from actorq.journal import journal_from_url
from actorq.journal.base import Submit
from actorq.model import NewTask, Task, TaskFilter, TaskState

CHUNK = 5000


async def fill(url: str, n: int) -> float:
    """Submit ``n`` queued echo tasks in bulk; the seconds it took."""
    journal = journal_from_url(url)
    await journal.open()
    t0 = time.perf_counter()
    try:
        for start in range(0, n, CHUNK):
            tasks = [NewTask("echo", max_attempts=1) for _ in range(min(CHUNK, n - start))]
            (outcome,) = await journal.run([Submit(tasks, time.time(), "bench")])
            outcome.unwrap()
        filled = time.perf_counter() - t0
        await seal_all(journal, None, "bench")
    finally:
        await journal.close()
    if url.startswith("postgresql"):
        await settle(url)
    return filled


async def settle(url: str) -> None:
    """What autovacuum and the checkpointer do while a backlog grows over time, done now for
    tables filled at once: without statistics the planner's first plans on a million fresh
    rows are guesses; autovacuum would start on both big tables (an insert-triggered vacuum)
    just as the node starts draining; and the fill's dirty pages, still in shared buffers,
    would be written out by the node's own connections as they need buffers."""
    import asyncpg

    base, _, schema = url.partition("?schema=")
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f"VACUUM (ANALYZE) {schema}.tasks, {schema}.journal")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def drained(db: str, api: str, count: int, timeout: float) -> tuple[float, list[float]]:
    """Wait until ``count`` tasks succeeded (the node's /stats: a count over the database on
    every poll would itself slow a deep backlog's drain); the first started_at of them, and
    their finished_at in order, from the tasks table."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{api}/api/v1/stats") as resp:
                succeeded = (await resp.json())["tasks"]["succeeded"]
            if succeeded >= count:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{succeeded} succeeded after {timeout} s")
            await asyncio.sleep(0.5)
    journal = journal_from_url(db)
    await journal.open()
    try:
        done: list[Task] = []
        cursor = None
        while True:
            page = await journal.list_tasks(TaskFilter(TaskState.SUCCEEDED), 500, cursor)
            done += page.tasks
            cursor = page.next_cursor
            if cursor is None:
                break
    finally:
        await journal.close()
    first = min(t.started_at or 0.0 for t in done)
    return first, sorted(t.finished_at or 0.0 for t in done)


async def measure(url: str, drain: int, warmup: int, workdir: str) -> dict[str, Any]:
    port = free_port()
    argv = [sys.executable, "-m", "actorq", "serve", "--port", str(port), "--database-url", url,
            "--concurrency", "10", "--node", "backlog"]  # fmt: skip
    t0 = time.perf_counter()
    log = os.open(os.path.join(workdir, f"serve-{port}.log"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    finally:
        os.close(log)
    try:
        api = f"http://127.0.0.1:{port}"
        await until_ready(api, proc, timeout=120)
        ready_s = time.perf_counter() - t0
        first, ends = await drained(url, api, drain, timeout=600)
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    steady = (drain - warmup) / (ends[drain - 1] - ends[warmup - 1])
    return {"ready_s": round(ready_s, 3), "drain_per_s": round(steady, 1),
            "drain_from_start_per_s": round(drain / (ends[drain - 1] - first), 1),
            "rss_mb": round(rss, 1)}  # fmt: skip


async def run(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    out: dict[str, Any] = {"n": args.n, "small": args.small, "drain": args.drain,
                           "warmup": args.warmup}  # fmt: skip
    for label, size in (("small", args.small), ("deep", args.n)):
        url, drop = fresh_url(args.database_url, workdir)
        try:
            out[f"{label}_fill_per_s"] = round(size / await fill(url, size), 1)
            measured = await measure(url, args.drain, args.warmup, workdir)
            for key, value in measured.items():
                out[f"{label}_{key}"] = value
        finally:
            await drop()
    out["drain_ratio"] = round(out["deep_drain_per_s"] / out["small_drain_per_s"], 3)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="tasks in the deep backlog")
    parser.add_argument("--small", type=int, default=10_000, help="tasks in the shallow one")
    parser.add_argument("--drain", type=int, default=5_000, help="tasks timed while draining")
    parser.add_argument("--warmup", type=int, default=1_000, help="of them, not timed")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--database-url", help="default: a fresh SQLite file per database")
    parser.add_argument("--workdir", default=None, help="where SQLite files go (default: tmp)")
    args = parser.parse_args()
    if args.drain > args.small:
        parser.error("--drain must not exceed --small")
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for _ in range(args.runs):
            line = await run(args, workdir)
            line.update({
                "benchmark": "backlog",
                "backend": "sqlite" if args.database_url is None else "postgresql",
                "rev": git_rev(), "python": platform.python_version(),
                "cpus": os.cpu_count(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            })  # fmt: skip
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
