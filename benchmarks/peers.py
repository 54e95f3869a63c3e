"""The common-path workload on actorq and on two peers, in one run, for ratios.

    python benchmarks/peers.py [--database-url POSTGRESQL_URL] [--runs 2] [--systems ...]

The peers are not dependencies of actorq; they live in a venv of their own, which also holds
actorq (this script runs actorq's half through ``common_path.py`` in the same interpreter):

    python3 -m venv /work/peers-venv
    /work/peers-venv/bin/pip install pgqueuer huey asyncpg
    /work/peers-venv/bin/pip install -e .          # from the repository's root
    /work/peers-venv/bin/python benchmarks/peers.py --runs 2

Each run does, for each system in ``--systems`` (actorq on SQLite, huey on SQLite, actorq on
PostgreSQL, pgqueuer on PostgreSQL; a peer that cannot be imported is skipped with a note on
stderr), the workload of ``common_path.py`` on a fresh database (a SQLite file in a
temporary directory; a fresh schema of ``--database-url``): this process is the client and
enqueues ``--one-by-one`` no-op jobs one at a time, then the rest of ``--n`` through the
system's bulk API in chunks of ``--chunk`` (pgqueuer: one ``Queries.enqueue`` of lists; huey:
``task.map``, which huey writes one job at a time), with no worker running; then a separate
worker process with ``--concurrency`` 10 drains them, timed in the worker from the first
handler start to the last handler end (its clock); then ``--pickup-samples`` jobs, one at a
time and ``--gap`` seconds apart, on the idle worker: pickup = handler start (the worker's
``time.time()``, reported on its stdout) minus the instant before the enqueue call.

Durable settings: huey's SqliteHuey with ``fsync=True`` (``synchronous=FULL``, WAL);
pgqueuer's tables logged (its ``durable`` level, the default) and the server's
``synchronous_commit`` (reported). pgqueuer's worker: ``QueueManager.run(batch_size=C/2,
max_concurrent_tasks=C)``, its cap on jobs in flight; huey's: C worker threads. Both keep
their default polling and wake-up settings.

Prints one JSON line per system per run, with the keys of ``common_path.py``, then one line
of ratios (actorq over its peer on the same backend: above 1 is actorq ahead for a rate,
behind for a pickup latency) per run, and with several runs a last line of each ratio's median.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

import common_path
from throughput import fresh_url, git_rev, percentiles

SYSTEMS = ("actorq-sqlite", "huey", "actorq-postgresql", "pgqueuer")
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
RATIO_KEYS = ("one_by_one_per_s", "bulk_per_s", "drain_per_s")


# -- the worker side: a separate process (`peers.py --worker SYSTEM ...`) --------------------


class Tally:
    """What a peer's handler reports on stdout: each probe's start, and the drain's span once
    ``n`` plain jobs have ended. Thread-safe (huey runs handlers in threads)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.ended = 0
        self.first: float | None = None
        self.last = 0.0
        self.lock = threading.Lock()

    def emit(self, line: str) -> None:
        with self.lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def begin(self, payload: str | None) -> bool:
        """At the handler's start; False for a probe (reported now, not counted)."""
        now = time.time()
        if payload is not None and payload.startswith("probe "):
            self.emit(f"{payload} {now!r}")
            return False
        with self.lock:
            if self.first is None:
                self.first = now
        return True

    def end(self) -> None:
        now = time.time()
        with self.lock:
            self.ended += 1
            self.last = max(self.last, now)
            done = self.ended == self.n
        if done:
            self.emit(f"drained {self.first!r} {self.last!r}")


def make_huey(path: str, tally: Tally | None = None) -> tuple[Any, Any]:
    """A durable SqliteHuey on ``path`` and its ``noop`` task (the worker passes ``tally``)."""
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=path, fsync=True)

    @huey.task(name="noop")
    def noop(payload: str | None) -> None:
        if tally is not None and tally.begin(payload):
            tally.end()

    return huey, noop


def huey_worker(path: str, concurrency: int, n: int) -> None:
    huey, _ = make_huey(path, Tally(n))
    huey.create_consumer(workers=concurrency, worker_type="thread").run()


async def pgqueuer_worker(url: str, concurrency: int, n: int) -> None:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    dsn, schema = common_path.split_schema(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema or "public"})
    manager = QueueManager(Queries(AsyncpgDriver(conn)))
    tally = Tally(n)

    @manager.entrypoint("noop")
    async def noop(job: Any) -> None:
        payload = None if job.payload is None else job.payload.decode()
        if tally.begin(payload):
            tally.end()

    await manager.run(batch_size=max(concurrency // 2, 1), max_concurrent_tasks=concurrency)


def worker_main(system: str, target: str, concurrency: int, n: int) -> None:
    if system == "huey":
        huey_worker(target, concurrency, n)
    else:
        asyncio.run(pgqueuer_worker(target, concurrency, n))


# -- the client side: enqueue, watch the worker's reports --------------------------------------


class HueyClient:
    def __init__(self, path: str) -> None:
        self.huey, self.noop = make_huey(path)
        self.target = path

    async def setup(self) -> None:
        pass

    async def one(self, payload: str | None) -> None:
        self.noop(payload)

    async def many(self, count: int) -> None:
        self.noop.map([None] * count)

    async def settled(self) -> None:
        pass

    async def close(self) -> None:
        self.huey.storage.close()

    async def durability(self) -> str:
        conn = self.huey.storage.conn
        (sync,) = conn.execute("PRAGMA synchronous").fetchone()
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        full = " (FULL)" if sync == 2 else ""
        return f"sqlite synchronous={sync}{full} journal_mode={mode} (huey's connection)"


class PgqueuerClient:
    def __init__(self, url: str) -> None:
        self.target = url
        self.conn: Any = None
        self.queries: Any = None

    async def setup(self) -> None:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        dsn, schema = common_path.split_schema(self.target)
        assert schema is not None
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f"CREATE SCHEMA {schema}")
        finally:
            await admin.close()
        self.conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        self.queries = Queries(AsyncpgDriver(self.conn))
        await self.queries.install()

    async def one(self, payload: str | None) -> None:
        await self.queries.enqueue("noop", None if payload is None else payload.encode())

    async def many(self, count: int) -> None:
        await self.queries.enqueue(["noop"] * count, [None] * count, [0] * count)

    async def settled(self) -> None:
        """Until the worker's buffered acknowledgements are written: an idle queue."""
        while await self.conn.fetchval("SELECT count(*) FROM pgqueuer"):
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.conn.close()

    async def durability(self) -> str:
        setting = await self.conn.fetchval("SELECT current_setting('synchronous_commit')")
        logged = await self.conn.fetchval(
            "SELECT bool_and(c.relpersistence = 'p') FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        )
        return f"postgresql synchronous_commit={setting}, pgqueuer's tables logged={logged}"


async def read_report(proc: asyncio.subprocess.Process, prefix: str, timeout: float) -> list[str]:
    """The next line of the worker's stdout that starts with ``prefix``, split."""
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the worker exited ({await proc.wait()}) before {prefix!r}")
            fields = line.decode().split()
            if line.decode().startswith(prefix):
                return fields


async def peer_run(system: str, args: argparse.Namespace, url: str) -> dict[str, Any]:
    client: HueyClient | PgqueuerClient
    client = HueyClient(url.split("///", 1)[1]) if system == "huey" else PgqueuerClient(url)
    result: dict[str, Any] = {}
    await client.setup()
    proc = None
    try:
        t0 = time.perf_counter()
        for _ in range(args.one_by_one):
            await client.one(None)
        result["one_by_one_per_s"] = args.one_by_one / (time.perf_counter() - t0)
        rest = args.n - args.one_by_one
        t0 = time.perf_counter()
        for start in range(0, rest, args.chunk):
            await client.many(min(args.chunk, rest - start))
        result["bulk_per_s"] = rest / (time.perf_counter() - t0) if rest else 0.0

        argv = [__file__, "--worker", system, client.target, str(args.concurrency), str(args.n)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        _, first, last = await read_report(proc, "drained", 600)
        result["drain_per_s"] = args.n / (float(last) - float(first))
        await client.settled()

        waits = []
        for i in range(args.pickup_samples):
            at = time.time()
            await client.one(f"probe {i}")
            _, _, started = await read_report(proc, f"probe {i} ", 60)
            waits.append(float(started) - at)
            await asyncio.sleep(args.gap)
        result["pickup_ms"] = percentiles(waits)
        result["durability"] = await client.durability()
    finally:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            await proc.wait()
        await client.close()
    return result


def described(system: str, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "bench": "common_path", "system": system, "backend": backend, "n": args.n,
        "one_by_one": args.one_by_one, "chunk": args.chunk, "concurrency": args.concurrency,
        "pickup_samples": args.pickup_samples, "gap_seconds": args.gap,
    }  # fmt: skip


async def one_system(system: str, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    if system.startswith("actorq"):
        args.database_url = args.pg_url if system.endswith("postgresql") else None
        return await common_path.one_run(args, workdir)
    backend = "postgresql" if system == "pgqueuer" else "sqlite"
    url, drop = fresh_url(args.pg_url if backend == "postgresql" else None, workdir)
    result = described(system, backend, args)
    try:
        result.update(await peer_run(system, args, url))
    finally:
        await drop()
    for key in RATIO_KEYS:
        result[key] = round(result[key], 1)
    result.update(common_path.run_facts())
    return result


def ratios(lines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": "common_path_ratios", "git": git_rev()}
    for ours, peer in (("actorq-postgresql", "pgqueuer"), ("actorq-sqlite", "huey")):
        if ours in lines and peer in lines:
            a, b = lines[ours], lines[peer]
            pair = {key: round(a[key] / b[key], 2) for key in RATIO_KEYS if b[key]}
            for p in ("p50", "p99"):
                pair[f"pickup_{p}"] = round(a["pickup_ms"][p] / b["pickup_ms"][p], 2)
            out[f"{ours}/{peer}"] = pair
    return out


def median_ratios(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each ratio's median over the runs."""
    out: dict[str, Any] = {"bench": "common_path_ratios_median", "runs": len(runs)}
    for pair in (key for key in runs[0] if "/" in key):
        values = [run[pair] for run in runs if pair in run]
        out[pair] = {key: round(statistics.median(v[key] for v in values), 2) for key in values[0]}
    return out


def available(system: str) -> bool:
    module = {"huey": "huey", "pgqueuer": "pgqueuer"}.get(system)
    if module is None or importlib.util.find_spec(module) is not None:
        return True
    print(f"{system} cannot be imported here: skipped (see the docstring)", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        system, target, concurrency, n = argv[1:5]
        worker_main(system, target, int(concurrency), int(n))
        return
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--systems", default=",".join(SYSTEMS), help=f"of {', '.join(SYSTEMS)}")
    known, rest = extra.parse_known_args(argv)
    if not any(arg.startswith("--database-url") for arg in rest):
        rest = [*rest, "--database-url", PG_DEFAULT]
    args = common_path.arguments(rest)
    common_path.forget_settings()
    args.pg_url = args.database_url
    asked = known.systems.split(",")
    unknown = sorted(set(asked) - set(SYSTEMS))
    if unknown:
        sys.exit(f"unknown systems {unknown}: choose among {', '.join(SYSTEMS)}")
    systems = [system for system in asked if available(system)]
    every: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for run in range(args.runs):
            lines = {}
            # Every other run goes in reverse order: a machine whose load drifts during a run
            # then favours no system over the runs.
            for system in systems if run % 2 == 0 else systems[::-1]:
                lines[system] = asyncio.run(one_system(system, args, workdir))
                print(json.dumps(lines[system]), flush=True)
            every.append(ratios(lines))
            print(json.dumps(every[-1]), flush=True)
    if len(every) > 1:
        print(json.dumps(median_ratios(every)), flush=True)


if __name__ == "__main__":
    main()
