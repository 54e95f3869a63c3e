"""Throughput and pickup-latency harness. Prints one JSON line per run.

    python benchmarks/throughput.py --n 20000 --concurrency 10 [--database-url URL] [--runs 3]

Each run, on a fresh database:
  1. enqueue N no-op tasks four ways, with no worker consuming: one by one through the Python
     API (sequential awaits, then 64 concurrent callers), in bulk (batches of 1000), and
     through HTTP (single-task POSTs from 32 concurrent clients);
  2. drain all of them with C workers: tasks per second from the node's start until every
     task's ``succeeded`` event is committed; with ``--nodes K``, K separate ``actorq worker``
     processes of C workers each drain them, timed from the first ``claimed`` to the last
     ``succeeded`` event in the journal (so process start-up is not counted);
  3. pickup latency on an idle node: enqueue one task, wait for its handler to start, repeat;
     p50/p95/p99 of (handler start - enqueue call).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

import actorq.loop as event_loop
from actorq import App
from actorq.http.app import make_app
from actorq.journal import journal_from_url
from actorq.runtime import Runtime

BULK = 1000


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)

    def pick(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 3)

    return {
        "p50": pick(0.5),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "mean": round(statistics.fmean(values) * 1000, 3),
    }


def fresh_url(base: str | None, workdir: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A database URL nobody else uses, and how to drop it afterwards."""
    if base is None or base.startswith("sqlite"):
        path = os.path.join(workdir, f"bench-{uuid.uuid4().hex[:8]}.db")

        async def drop_file() -> None:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)

        return f"sqlite:///{path}", drop_file
    import asyncpg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in base else "?"

    async def drop_schema() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()

    return f"{base}{sep}schema={schema}", drop_schema


def build_app(url: str, concurrency: int, **settings: Any) -> tuple[App, dict[str, Any]]:
    app = App(database_url=url, concurrency=concurrency, node="bench", **settings)
    probe: dict[str, Any] = {"started": {}, "waiters": {}}

    @app.task("noop", max_attempts=1)
    async def noop(payload: Any) -> None:
        return None

    @app.task("probe", max_attempts=1)
    async def probe_task(payload: Any) -> None:
        now = time.perf_counter()
        waiter = probe["waiters"].pop(payload, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)

    return app, probe


async def enqueue_phase(url: str, n: int) -> dict[str, float]:
    """Enqueue rates, measured on a node that claims nothing (it serves another queue)."""
    app, _ = build_app(url, 1, queues=("nothing",))
    out: dict[str, float] = {}
    async with app:
        runtime = await app.start()
        quarter = max(n // 4, 1)

        t0 = time.perf_counter()
        for _ in range(quarter):
            await app.enqueue("noop")
        out["enqueue_one_by_one_per_s"] = quarter / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        sem = asyncio.Semaphore(64)

        async def one() -> None:
            async with sem:
                await app.enqueue("noop")

        await asyncio.gather(*(one() for _ in range(quarter)))
        out["enqueue_concurrent64_per_s"] = quarter / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        remaining = n - 3 * quarter
        for start in range(0, remaining, BULK):
            await app.enqueue_many([{"type": "noop"}] * min(BULK, remaining - start))
        out["enqueue_bulk_per_s"] = remaining / (time.perf_counter() - t0)

        out["enqueue_http_per_s"] = await http_enqueue(runtime, quarter)
    return out


async def http_enqueue(runtime: Runtime, count: int) -> float:
    runner = web.AppRunner(make_app(runtime), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/api/v1/tasks"
    sem = asyncio.Semaphore(32)
    try:
        async with aiohttp.ClientSession() as session:
            t0 = time.perf_counter()

            async def post() -> None:
                async with sem, session.post(url, json={"type": "noop"}) as resp:
                    if resp.status != 201:
                        raise RuntimeError(await resp.text())

            await asyncio.gather(*(post() for _ in range(count)))
            return count / (time.perf_counter() - t0)
    finally:
        await runner.cleanup()


async def drain_phase(url: str, n: int, concurrency: int) -> float:
    app, _ = build_app(url, concurrency)
    async with app:
        t0 = time.perf_counter()
        runtime = await app.start()
        async with runtime.live_events(size=n * 4) as feed:
            done = (await runtime.stats())["tasks"]["succeeded"]
            while done < n:
                item = await asyncio.wait_for(feed.get(), 60)
                if item["kind"] == "succeeded":
                    done += 1
                elif item["kind"] == "lagged":
                    raise RuntimeError("the benchmark's event feed lagged")
        return n / (time.perf_counter() - t0)


async def drain_processes(url: str, n: int, concurrency: int, nodes: int) -> float:
    """Drain with ``nodes`` worker processes; the rate comes from the journal's own times."""
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}
    argv = [sys.executable, "-m", "actorq", "worker", "--app", "throughput:app",
            "--database-url", url, "--concurrency", str(concurrency)]  # fmt: skip
    procs = [
        subprocess.Popen([*argv, "--node", f"bench{i}"], env=env, stderr=subprocess.DEVNULL)
        for i in range(nodes)
    ]
    journal = journal_from_url(url)
    await journal.open()
    try:
        async with asyncio.timeout(600):
            while True:
                counts = await journal.counts()
                if sum(v for (_, state), v in counts.items() if state.value == "succeeded") >= n:
                    break
                await asyncio.sleep(0.05)
        first_claim = last_success = None
        async for event in journal.events():
            if event.kind.value == "claimed" and first_claim is None:
                first_claim = event.at
            elif event.kind.value == "succeeded":
                last_success = event.at if last_success is None else max(last_success, event.at)
        if first_claim is None or last_success is None:
            raise RuntimeError("the journal shows no drain")
        return n / (last_success - first_claim)
    finally:
        await journal.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)


async def pickup_phase(url: str, concurrency: int, samples: int) -> dict[str, float]:
    app, probe = build_app(url, concurrency)
    latencies = []
    async with app:
        await app.start()
        loop = asyncio.get_running_loop()
        for i in range(samples + 20):
            key = f"p{i}"
            waiter = loop.create_future()
            probe["waiters"][key] = waiter
            t0 = time.perf_counter()
            await app.enqueue("probe", key)
            started = await asyncio.wait_for(waiter, 10)
            if i >= 20:  # the first few warm up connections and caches
                latencies.append(started - t0)
            await asyncio.sleep(0.002)  # an idle node between samples
    return percentiles(latencies)


# The App the worker processes of --nodes serve (`actorq worker --app throughput:app`).
app, _ = build_app(os.environ.get("ACTORQ_DATABASE_URL", "sqlite:///bench.db"), 10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until_ready(
    url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0
) -> None:
    """Wait until the node at ``url`` answers /ready with 200 (``proc``: its process, which
    must not have exited meanwhile)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the node exited with {proc.returncode}")
            try:
                async with session.get(f"{url}/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready after {timeout} s")
            await asyncio.sleep(0.02)


def git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(__file__),
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def one_run(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    url, drop = fresh_url(args.database_url, workdir)
    try:
        result: dict[str, Any] = {
            "bench": "throughput",
            "backend": url.split(":", 1)[0],
            "n": args.n,
            "concurrency": args.concurrency,
            "event_loop": event_loop.running(),
        }
        result.update(await enqueue_phase(url, args.n))
        if args.nodes:
            result["nodes"] = args.nodes
            result["drain_per_s"] = await drain_processes(url, args.n, args.concurrency, args.nodes)
        else:
            result["drain_per_s"] = await drain_phase(url, args.n, args.concurrency)
        result["pickup_ms"] = await pickup_phase(url, args.concurrency, args.samples)
    finally:
        await drop()
    for key, value in list(result.items()):
        if isinstance(value, float):
            result[key] = round(value, 1)
    result.update(
        python=platform.python_version(),
        cpus=os.cpu_count(),
        git=git_rev(),
        at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--samples", type=int, default=500, help="pickup latency samples")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=0, help="drain with K worker processes")
    parser.add_argument("--database-url", help="default: a fresh SQLite file per run")
    parser.add_argument("--workdir", default=None, help="where SQLite files go (default: tmp)")
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the loop of this process (the nodes' default: uvloop)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for _ in range(args.runs):
            result = event_loop.run(one_run(args, workdir), args.event_loop)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
