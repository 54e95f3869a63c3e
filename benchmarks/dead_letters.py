"""Bulk dead-letter retry/purge and the retention sweep on a large table. Prints one JSON line.

    python benchmarks/dead_letters.py --n 100000 [--database-url URL]

On a fresh database (a SQLite file in a temporary folder, or a fresh schema of the PostgreSQL
URL given): write N dead tasks and N succeeded ones (finished an hour ago), then time
  1. listing the first page of dead letters and a filtered page (the queue of the last 1%);
  2. retrying every dead letter of one queue (1% of them), then purging all the dead letters,
     in chunks of 500 per transaction (``actorq.dead_letters.settle``);
  3. expiring the N succeeded tasks with a 30-minute retention (``Expire`` batches of 500,
     as the sweeper does), and that a replay agrees with the live projection after all that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from typing import Any

import asyncpg

from actorq import audit
from actorq.dead_letters import settle
from actorq.journal import journal_from_url
from actorq.journal.base import Append, DeadAction, Expire, Journal, Op, Outcome, Selection, Submit
from actorq.lifecycle import claimed_event
from actorq.model import Event, EventKind, NewTask, TaskFilter, TaskState

BATCH = 1000


async def write_tasks(journal: Journal, n: int, at: float, dead: bool) -> None:
    """``n`` tasks that ran once and died (``dead``) or succeeded, in batches."""
    worker = "bench/w0"
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        news = [
            NewTask("t", {"i": start + i}, queue="rare" if dead and start + i >= n * 0.99 else "q",
                    max_attempts=1)
            for i in range(count)
        ]  # fmt: skip
        (outcome,) = await journal.run([Submit(news, at, "bench")])
        ids = [t.id for t in outcome.unwrap()]
        end = (
            (lambda i: Event(EventKind.DEAD_LETTERED, i, at, "bench",
                             {"error": "boom", "reason": "failed"}, worker))
            if dead
            else (lambda i: Event(EventKind.SUCCEEDED, i, at, "bench", {"result": None}, worker))
        )  # fmt: skip
        for make in (
            lambda i: claimed_event(i, worker, at=at, node="bench", until=at + 60),
            lambda i: Event(EventKind.STARTED, i, at, "bench", {}, worker),
            end,
        ):
            for result in await journal.run([Append(make(i)) for i in ids]):
                result.unwrap()


async def timed(coro: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    value = await coro
    return value, round(time.perf_counter() - began, 3)


async def bench(url: str, n: int) -> dict[str, Any]:
    journal = journal_from_url(url)
    await journal.open()

    async def run(op: Op) -> Outcome:
        (outcome,) = await journal.run([op])
        return outcome

    try:
        at = time.time() - 3600
        _, setup = await timed(asyncio.gather(write_tasks(journal, n, at, True)))
        await write_tasks(journal, n, at, False)
        dead = TaskFilter(TaskState.DEAD)
        _, first_page = await timed(journal.list_tasks(dead, 50, None))
        _, rare_page = await timed(journal.list_tasks(TaskFilter(TaskState.DEAD, "rare"), 50, None))
        kw: dict[str, Any] = {"clock": time.time, "node": "bench", "by": "bench"}
        retried, retry_s = await timed(settle(run, DeadAction.RETRY, Selection(queue="rare"), **kw))
        purged, purge_s = await timed(settle(run, DeadAction.PURGE, Selection(), **kw))

        async def sweep() -> int:
            total = 0
            while True:
                (outcome,) = await journal.run([Expire(time.time(), "bench", 1800.0)])
                got = len(outcome.unwrap())
                total += got
                if got < 500:
                    return total

        expired, expire_s = await timed(sweep())
        report = await audit.verify_projection(journal)
        return {
            "backend": url.split(":", 1)[0],
            "n": n,
            "setup_dead_s": setup,
            "list_first_page_ms": round(first_page * 1000, 2),
            "list_filtered_page_ms": round(rare_page * 1000, 2),
            "retried": retried,
            "retry_s": retry_s,
            "purged": purged,
            "purge_s": purge_s,
            "purge_per_s": round(purged / purge_s) if purge_s else None,
            "expired": expired,
            "expire_s": expire_s,
            "expire_per_s": round(expired / expire_s) if expire_s else None,
            "replay_matches": report.matches,
            "tasks_left": report.tasks,
        }
    finally:
        await journal.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    if args.database_url is None:
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(await bench(f"sqlite:///{folder}/bench.db", args.n)))
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in args.database_url else "?"
    try:
        print(json.dumps(await bench(f"{args.database_url}{sep}schema={schema}", args.n)))
    finally:
        conn = await asyncpg.connect(args.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
