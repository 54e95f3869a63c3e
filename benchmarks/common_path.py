"""The common path across processes, on durable settings. One JSON line per run.

    python benchmarks/common_path.py [--database-url URL] [--n 20000] [--runs 3]

Each run, on a fresh database (a SQLite file in a temporary directory, or a fresh schema of
the PostgreSQL database ``--database-url`` names), with only public interfaces: this process
is the client (an ``actorq.App`` that runs no node), and the worker is an ``actorq worker``
process serving this module's ``app``.

  1. with no worker running, enqueue ``--one-by-one`` no-op tasks one at a time (sequential
     ``await app.enqueue``), then the rest of ``--n`` with ``app.enqueue_many`` in chunks of
     ``--chunk``: ``one_by_one_per_s`` and ``bulk_per_s``;
  2. start ``actorq worker --concurrency C`` and let it drain them: ``drain_per_s`` is N over
     the span from the first handler start to the last finish in the tasks table (the
     worker's own clock), so the process's start-up is not counted;
  3. on the now idle worker, ``--pickup-samples`` tasks one after another, ``--gap`` seconds
     apart: pickup = the handler's ``started_at`` (the worker's clock, same machine) minus the
     instant before the ``enqueue`` call; p50/p95/p99 in ms.

The defaults are the durable ones: every SQLite commit of a submission is ``synchronous=FULL``,
and PostgreSQL submissions commit with the server's ``synchronous_commit`` (reported in the
line; ``on`` is durable). ``benchmarks/peers.py`` runs the same workload on other queues.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from throughput import fresh_url, git_rev, percentiles

from actorq import App, TaskState


async def noop(payload: Any) -> None:
    return None


def make_app(**settings: Any) -> App:
    """An App that knows the ``noop`` type: the client's, and the worker's below."""
    made = App(**settings)
    made.task("noop", max_attempts=1)(noop)
    return made


# What the worker serves: `actorq worker --app common_path:app --database-url ...`.
app = make_app()


def split_schema(url: str) -> tuple[str, str | None]:
    """A PostgreSQL URL without its ``schema`` parameter, and that schema."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((value for key, value in query if key == "schema"), None)
    kept = urlencode([(key, value) for key, value in query if key != "schema"])
    return urlunsplit(parts._replace(query=kept)), schema


async def read_one(url: str, sql: str) -> tuple[Any, ...]:
    """One row of a read-only query on the database, outside actorq (the benchmark's eye)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]

        def read() -> tuple[Any, ...]:
            # sqlite3's "with" ends a transaction, not the connection: close it too.
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return tuple(db.execute(sql).fetchone())

        return await asyncio.to_thread(read)
    import asyncpg

    dsn, schema = split_schema(url)
    settings = {"search_path": schema} if schema else {}
    conn = await asyncpg.connect(dsn, server_settings=settings)
    try:
        return tuple(await conn.fetchrow(sql))
    finally:
        await conn.close()


async def enqueue_phase(client: App, n: int, one_by_one: int, chunk: int) -> dict[str, float]:
    t0 = time.perf_counter()
    for _ in range(one_by_one):
        await client.enqueue("noop")
    elapsed = time.perf_counter() - t0
    out = {"one_by_one_per_s": one_by_one / elapsed}
    rest = n - one_by_one
    t0 = time.perf_counter()
    for start in range(0, rest, chunk):
        await client.enqueue_many([{"type": "noop"}] * min(chunk, rest - start))
    out["bulk_per_s"] = rest / (time.perf_counter() - t0) if rest else 0.0
    return out


async def drain_rate(
    url: str, n: int, worker: subprocess.Popen[bytes], timeout: float = 600.0
) -> float:
    """Wait until ``n`` tasks succeeded; N over first start .. last finish (the tasks table)."""
    deadline = time.monotonic() + timeout
    while (await read_one(url, "SELECT count(*) FROM tasks WHERE state = 'succeeded'"))[0] < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the drain did not finish in {timeout} s")
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode} mid-drain")
        await asyncio.sleep(0.05)
    first, last = await read_one(
        url, "SELECT min(started_at), max(finished_at) FROM tasks WHERE state = 'succeeded'"
    )
    return float(n / (last - first))


async def pickup_phase(client: App, samples: int, gap: float) -> list[float]:
    """Enqueue to handler start (the task's ``started_at``, the worker's clock on this machine).
    The probe waits out the gap before it reads the task back: reading it while the worker
    picks it up would load the two cores with this process's queries, which the peers' probes
    (they read the worker's report) do not."""
    waits = []
    for i in range(samples):
        at = time.time()
        task = await client.enqueue("noop", i)
        await asyncio.sleep(gap)
        while (task := await client.get(task.id)).state is not TaskState.SUCCEEDED:
            await asyncio.sleep(0.001)
        assert task.started_at is not None
        waits.append(task.started_at - at)
    return waits


def forget_settings() -> None:
    """Drop ``ACTORQ_*`` variables and read no ``actorq.toml``, in this process and so in its
    worker: they would override the benchmark's settings, the client's database URL too."""
    for name in [name for name in os.environ if name.startswith("ACTORQ_")]:
        del os.environ[name]
    os.environ["ACTORQ_CONFIG"] = os.devnull


def start_worker(url: str, concurrency: int, workdir: str) -> subprocess.Popen[bytes]:
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": here}
    argv = [sys.executable, "-m", "actorq", "worker", "--app", "common_path:app",
            "--database-url", url, "--concurrency", str(concurrency),
            "--node", "bench"]  # fmt: skip
    with open(os.path.join(workdir, "worker.log"), "ab") as log:  # kept for a post-mortem
        return subprocess.Popen(argv, env=env, cwd=workdir, stderr=log)


async def durability(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite synchronous=FULL (actorq's writer connection)"
    (setting,) = await read_one(url, "SELECT current_setting('synchronous_commit')")
    return f"postgresql synchronous_commit={setting}"


async def one_run(args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    url, drop = fresh_url(args.database_url, workdir)
    result: dict[str, Any] = {
        "bench": "common_path",
        "system": "actorq",
        "backend": url.split(":", 1)[0],
        "n": args.n,
        "one_by_one": args.one_by_one,
        "chunk": args.chunk,
        "concurrency": args.concurrency,
        "pickup_samples": args.pickup_samples,
        "gap_seconds": args.gap,
    }
    worker = None
    try:
        async with make_app(database_url=url, node="bench-client") as client:
            result.update(await enqueue_phase(client, args.n, args.one_by_one, args.chunk))
            worker = start_worker(url, args.concurrency, workdir)
            try:
                result["drain_per_s"] = await drain_rate(url, args.n, worker)
            except RuntimeError:
                with open(os.path.join(workdir, "worker.log"), "rb") as log:  # noqa: ASYNC230
                    sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
                raise
            waits = await pickup_phase(client, args.pickup_samples, args.gap)
            result["pickup_ms"] = percentiles(waits)
        result["durability"] = await durability(url)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        await drop()
    for key, value in list(result.items()):
        if isinstance(value, float) and key.endswith("_per_s"):
            result[key] = round(value, 1)
    result.update(run_facts())
    return result


def run_facts() -> dict[str, Any]:
    """What each JSON line says about where and when it was measured."""
    return {
        "load": [round(x, 2) for x in os.getloadavg()],
        "git": git_rev(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file per run")
    parser.add_argument("--n", type=int, default=20_000, help="tasks in all")
    parser.add_argument("--one-by-one", type=int, default=2_000, help="of them, one at a time")
    parser.add_argument("--chunk", type=int, default=1_000, help="tasks per enqueue_many")
    parser.add_argument("--concurrency", type=int, default=10, help="the worker's")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--pickup-samples", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between pickups")
    parser.add_argument("--workdir", default=None, help="where SQLite files go (default: tmp)")
    args = parser.parse_args(argv)
    if not 0 <= args.one_by_one <= args.n:
        parser.error("--one-by-one must be between 0 and --n")
    return args


def main() -> None:
    args = arguments()
    forget_settings()
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for _ in range(args.runs):
            print(json.dumps(asyncio.run(one_run(args, workdir))), flush=True)


if __name__ == "__main__":
    main()
