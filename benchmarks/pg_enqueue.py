"""Client-side enqueue rates on PostgreSQL: one by one, concurrent callers, bulk chunks.

A client App (no node in this process) enqueues a type that only a registered live node
serves (a node row written here, so the client must resolve the type through the journal).
Prints one JSON line per run: rates (wall) and, for one by one and bulk, ``..._cpu_us``: this
client process's CPU time per task (the server's is not in it), which another process's load
disturbs less than the wall time. Usage: python benchmarks/pg_enqueue.py [--n 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

import asyncpg

import actorq
from actorq.journal import journal_from_url
from actorq.nodes import Node, ServedType

DSN = os.environ.get("ACTORQ_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def one_run(n: int, concurrent: int, bulk_total: int, chunk: int) -> dict[str, float]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    url = f"{DSN}?schema={schema}"
    journal = journal_from_url(url)
    await journal.open()
    now = time.time()

    async def heartbeat() -> None:
        at = time.time()
        types = {"noop": ServedType("noop")}
        await journal.register_node(Node("bench-node", "host", 1, now, at, types), start=True)

    await heartbeat()
    app = actorq.App(database_url=url)
    out: dict[str, float] = {}
    try:
        await app.enqueue("noop", {"i": -1})  # opens the pool
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            await app.enqueue("noop", {"i": i})
        out["one_by_one_per_s"] = n / (time.perf_counter() - t0)
        out["one_by_one_cpu_us"] = (time.process_time() - c0) / n * 1e6

        async def caller(k: int) -> None:
            for i in range(n // concurrent):
                await app.enqueue("noop", {"i": i, "k": k})

        await heartbeat()
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(concurrent)))
        out[f"concurrent_{concurrent}_per_s"] = (n // concurrent * concurrent) / (
            time.perf_counter() - t0
        )
        await heartbeat()
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, bulk_total, chunk):
            items = [{"type": "noop", "payload": {"i": i}} for i in range(start, start + chunk)]
            await app.enqueue_many(items)
        out[f"bulk_{chunk}_per_s"] = bulk_total / (time.perf_counter() - t0)
        out[f"bulk_{chunk}_cpu_us"] = (time.process_time() - c0) / bulk_total * 1e6
    finally:
        await app.stop()
        await journal.close()
        conn = await asyncpg.connect(DSN)
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
    return {k: round(v, 1) for k, v in out.items()}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrent", type=int, default=64)
    parser.add_argument("--bulk", type=int, default=20000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.runs):
        result = await one_run(args.n, args.concurrent, args.bulk, args.chunk)
        print(json.dumps({"bench": "pg_enqueue", **result}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
