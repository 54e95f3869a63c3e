"""Enqueue rates on a SQLite file, one phase at a time: a small harness for the SQLite journal.

    python benchmarks/sqlite_enqueue.py [--phases client_one,node64,...] [--n 2000] [--runs 3]
                                        [--profile PHASE]

Phases, each on a fresh file in a temporary directory (synchronous=FULL, as always):
  client_one    ``await app.enqueue`` one at a time from an App that runs no node
  journal_one   ``journal.run([Submit([task])])`` one at a time (the journal alone)
  client64      64 concurrent callers of ``app.enqueue`` from an App that runs no node
  journal64     64 concurrent callers of ``journal.run([Submit([task])])``
  node_one      ``await app.enqueue`` one at a time through a node (the JournalWriter)
  node64        64 concurrent callers through a node (group commit)
  client_bulk   ``app.enqueue_many`` of 1,000 from an App that runs no node
  journal_bulk  ``journal.run([Submit(1,000 tasks)])`` (the journal alone)
One JSON line per phase and run: ``per_s`` (wall) and ``cpu_us_per_task``, this process's CPU
time (every thread: the caller's and the journal's writer) per task, which another
process's load disturbs less than the wall time. ``--profile PHASE`` runs that phase once
under cProfile and prints the top functions by total time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from actorq import App
from actorq.journal import journal_from_url
from actorq.journal.base import Submit
from actorq.model import NewTask

BULK = 1000


@attrs.frozen
class Rate:
    per_s: float
    cpu_us_per_task: float


class Start:
    """The instant a phase's timed part starts, on the wall clock and in CPU time."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rate(self, n: int) -> Rate:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return Rate(n / wall, cpu / n * 1e6)


def make_app(url: str, **settings: Any) -> App:
    app = App(database_url=url, node="bench", **settings)

    @app.task("noop", max_attempts=1)
    async def noop(payload: Any) -> None:
        return None

    return app


async def client_one(url: str, n: int) -> Rate:
    async with make_app(url) as app:
        await app.enqueue("noop")  # opens the journal
        t0 = Start()
        for _ in range(n):
            await app.enqueue("noop")
        return t0.rate(n)


async def journal_one(url: str, n: int) -> Rate:
    journal = journal_from_url(url)
    await journal.open()
    try:
        t0 = Start()
        for _ in range(n):
            await journal.run([Submit([NewTask("noop")], time.time(), "client:bench")])
        return t0.rate(n)
    finally:
        await journal.close()


async def client64(url: str, n: int) -> Rate:
    async with make_app(url) as app:
        await app.enqueue("noop")
        sem = asyncio.Semaphore(64)

        async def one() -> None:
            async with sem:
                await app.enqueue("noop")

        t0 = Start()
        await asyncio.gather(*(one() for _ in range(n * 2)))
        return t0.rate(n * 2)


async def journal64(url: str, n: int) -> Rate:
    journal = journal_from_url(url)
    await journal.open()
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        async with sem:
            await journal.run([Submit([NewTask("noop")], time.time(), "client:bench")])

    try:
        t0 = Start()
        await asyncio.gather(*(one() for _ in range(n * 2)))
        return t0.rate(n * 2)
    finally:
        await journal.close()


async def _node(url: str, n: int, callers: int) -> Rate:
    async with make_app(url, concurrency=1, queues=("nothing",)) as app:
        await app.start()
        await app.enqueue("noop")
        sem = asyncio.Semaphore(callers)

        async def one() -> None:
            async with sem:
                await app.enqueue("noop")

        t0 = Start()
        if callers == 1:
            for _ in range(n):
                await app.enqueue("noop")
        else:
            await asyncio.gather(*(one() for _ in range(n)))
        return t0.rate(n)


async def node_one(url: str, n: int) -> Rate:
    return await _node(url, n, 1)


async def node64(url: str, n: int) -> Rate:
    return await _node(url, n * 2, 64)


async def client_bulk(url: str, n: int) -> Rate:
    total = n * 10
    async with make_app(url) as app:
        await app.enqueue("noop")
        t0 = Start()
        for _ in range(0, total, BULK):
            await app.enqueue_many([{"type": "noop"}] * BULK)
        return t0.rate(total)


async def journal_bulk(url: str, n: int) -> Rate:
    total = n * 10
    journal = journal_from_url(url)
    await journal.open()
    try:
        t0 = Start()
        for _ in range(0, total, BULK):
            tasks = [NewTask("noop") for _ in range(BULK)]
            await journal.run([Submit(tasks, time.time(), "client:bench")])
        return t0.rate(total)
    finally:
        await journal.close()


PHASES: dict[str, Callable[[str, int], Awaitable[Rate]]] = {
    "client_one": client_one,
    "journal_one": journal_one,
    "client64": client64,
    "journal64": journal64,
    "node_one": node_one,
    "node64": node64,
    "client_bulk": client_bulk,
    "journal_bulk": journal_bulk,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as workdir:

        def url() -> str:
            return f"sqlite:///{os.path.join(workdir, uuid.uuid4().hex[:8] + '.db')}"

        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            rate = asyncio.run(PHASES[args.profile](url(), args.n))
            prof.disable()
            print(json.dumps({"phase": args.profile, "per_s": round(rate.per_s), "profiled": True}))
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            return
        for run in range(args.runs):
            for name in args.phases.split(","):
                rate = asyncio.run(PHASES[name](url(), args.n))
                line = {"label": args.label, "phase": name, "run": run, "per_s": round(rate.per_s),
                        "cpu_us_per_task": round(rate.cpu_us_per_task, 1)}  # fmt: skip
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
