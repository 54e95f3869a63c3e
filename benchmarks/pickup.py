"""Pickup latency across processes, and what an idle node costs. One JSON line per run.

    python benchmarks/pickup.py [--database-url URL] [--samples 200] [--gap 0.01] [--runs 3]

Each run, on a fresh database (a SQLite file by default): an ``actorq worker`` process
(default settings, its fallback poll included) serves the built-in ``echo`` type; this process
enqueues one task at a time with ``App.enqueue``, as a web app beside the worker would, waits
until it has succeeded, pauses ``--gap`` seconds and goes on. Pickup = the handler's start
(``started_at``, the worker's clock: the same machine) minus the instant before the enqueue
call. Then both stay idle for ``--idle`` seconds while the worker's CPU time is read from
/proc: the share of one core an idle node uses.
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

from throughput import fresh_url, git_rev, percentiles

from actorq import App
from actorq.journal import journal_from_url
from actorq.model import TaskState


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def until_up(url: str, timeout: float = 30.0) -> None:
    journal = journal_from_url(url)
    await journal.open()
    try:
        deadline = time.monotonic() + timeout
        while not await journal.live_nodes(0):
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not start")
            await asyncio.sleep(0.05)
    finally:
        await journal.close()


async def one_run(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    url, drop = fresh_url(args.database_url, workdir)
    async with App(database_url=url):
        pass  # the schema, before the worker opens it
    argv = [sys.executable, "-m", "actorq", "worker", "--database-url", url, "--node", "bench"]
    worker = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        await until_up(url)
        waits: list[float] = []
        commits: list[float] = []
        async with App(database_url=url) as app:
            for i in range(args.samples):
                at = time.time()
                task = await app.enqueue("echo", i)
                commits.append(time.time() - at)
                while task.state is not TaskState.SUCCEEDED:
                    await asyncio.sleep(0.001)
                    task = await app.get(task.id)
                assert task.started_at is not None
                waits.append(task.started_at - at)
                await asyncio.sleep(args.gap)
        await asyncio.sleep(1.0)  # the worker settles
        before, t0 = cpu_seconds(worker.pid), time.monotonic()
        await asyncio.sleep(args.idle)
        idle = (cpu_seconds(worker.pid) - before) / (time.monotonic() - t0)
    finally:
        worker.terminate()
        worker.wait(10)
        await drop()
    return {
        "benchmark": "pickup_across_processes",
        "backend": url.split(":", 1)[0],
        "samples": args.samples,
        "gap_seconds": args.gap,
        "pickup_ms": percentiles(waits),
        "enqueue_ms": percentiles(commits),  # within pickup: the durable commit itself
        "idle_worker_cpu_percent": round(idle * 100, 3),
        "rev": git_rev(),
        "python": platform.python_version(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between tasks")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measured")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--database-url", help="default: a fresh SQLite file per run")
    parser.add_argument("--workdir", default=None, help="where SQLite files go (default: tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for _ in range(args.runs):
            print(json.dumps(asyncio.run(one_run(args, workdir))), flush=True)


if __name__ == "__main__":
    main()
