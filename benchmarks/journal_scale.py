"""The audit trail at scale: seal, verify and replay a journal of N events. One JSON line.

    python benchmarks/journal_scale.py [--events 1000000] [--database-url URL]

On a fresh database (a SQLite file in a temporary folder, or a fresh schema of the PostgreSQL
URL given), build a journal of N events quickly: two tasks go through the real journal (one
submitted, claimed, started, succeeded and expired; one left succeeded), then their rows are
copied in bulk under new task ids (1% of the tasks stay in the projection, the rest expire).
Then each step runs in a process of its own, so its peak RSS is its own:

  seal     seal the whole journal (``seal_all``: 5,000 rows a seal)
  verify   check the chain of seals over every row (``audit.verify_seals``)
  replay   fold the whole history (``audit.replay_all``), and again ``--until`` its middle

Figures: seconds and peak RSS (MiB) of each step, events per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import asyncpg

from actorq import audit
from actorq.actors.sealer import seal_all
from actorq.journal import journal_from_url
from actorq.journal.base import Append, Expire, Journal, Submit
from actorq.journal.postgres import split_url
from actorq.journal.rows import EVENT_COLUMNS, TASK_COLUMNS
from actorq.journal.sqlite import path_from_url
from actorq.lifecycle import claimed_event
from actorq.model import Event, EventKind, NewTask

CHUNK = 50_000


async def _templates(journal: Journal) -> tuple[str, str]:
    """Two tasks through the real journal: one expired, one left succeeded. Their ids."""
    at, worker = time.time() - 3600, "bench/w0"
    (out,) = await journal.run([Submit([NewTask("t", {"i": 0}), NewTask("t", {"i": 1})], at,
                                       "bench")])  # fmt: skip
    ids = [t.id for t in out.unwrap()]
    for make in (
        lambda i: claimed_event(i, worker, at=at, node="bench", until=at + 60),
        lambda i: Event(EventKind.STARTED, i, at, "bench", {}, worker),
        lambda i: Event(EventKind.SUCCEEDED, i, at, "bench", {"result": {"ok": True}}, worker),
    ):
        for result in await journal.run([Append(make(i)) for i in ids]):
            result.unwrap()
    # Only the first expires: the second finished later than the cut-off.
    (out,) = await journal.run([Expire(at + 1800, "bench", retention=1800.0, limit=1)])
    (gone,) = out.unwrap()
    live = ids[1] if gone.id == ids[0] else ids[0]
    return gone.id, live


def _clones(
    rows: list[tuple[Any, ...]], gone: str, live: str, events: int, top: int
) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]]]:
    """Rows for new tasks copied from the two templates' rows, seqs from ``top + 1`` on, up
    to ``events`` rows in all; and the (id, last seq) of the tasks left live."""
    col = {c: i for i, c in enumerate(EVENT_COLUMNS)}
    expired = [r for r in rows if r[col["task_id"]] == gone]
    kept = [r for r in rows if r[col["task_id"]] == live]
    out: list[tuple[Any, ...]] = []
    live_tasks: list[tuple[str, int]] = []
    seq, k = top, 0
    base = max(float(r[col["at"]]) for r in rows)
    while seq < events:
        k += 1
        template = kept if k % 100 == 0 else expired
        task_id = str(uuid.uuid4())
        for r in template:
            seq += 1
            row = list(r)
            row[col["seq"]], row[col["task_id"]] = seq, task_id
            row[col["at"]] = base + seq * 0.001  # in seq order, as a journal is written
            out.append(tuple(row))
        if template is kept:
            live_tasks.append((task_id, seq))
    return out, live_tasks


def _task_copy(placeholders: list[str]) -> str:
    cols = ", ".join(TASK_COLUMNS)
    picked = ", ".join(
        placeholders[0] if c == "id" else placeholders[1] if c == "seq" else c for c in TASK_COLUMNS
    )
    return f"INSERT INTO tasks ({cols}) SELECT {picked} FROM tasks WHERE id = {placeholders[2]}"


def _build_sqlite(url: str, gone: str, live: str, events: int) -> int:
    db = sqlite3.connect(path_from_url(url), isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    rows = db.execute(f"SELECT {', '.join(EVENT_COLUMNS)} FROM journal ORDER BY seq").fetchall()
    clones, live_tasks = _clones(rows, gone, live, events, int(rows[-1][0]))
    marks = ", ".join("?" * len(EVENT_COLUMNS))
    db.execute("BEGIN")
    for start in range(0, len(clones), CHUNK):
        db.executemany(f"INSERT INTO journal ({', '.join(EVENT_COLUMNS)}) VALUES ({marks})",
                       clones[start : start + CHUNK])  # fmt: skip
    db.executemany(_task_copy(["?", "?", "?"]), [(t, s, live) for t, s in live_tasks])
    top = clones[-1][0] if clones else int(rows[-1][0])
    db.execute("UPDATE meta SET value = ? WHERE key = 'projection_seq'", (str(top),))
    db.execute("COMMIT")
    db.close()
    return len(live_tasks) + 1


async def _build_postgres(url: str, gone: str, live: str, events: int) -> int:
    dsn, schema = split_url(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": str(schema)})
    try:
        rows = [tuple(r) for r in await conn.fetch(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM journal ORDER BY seq")]  # fmt: skip
        clones, live_tasks = _clones(rows, gone, live, events, int(rows[-1][0]))
        async with conn.transaction():
            for start in range(0, len(clones), CHUNK):
                await conn.copy_records_to_table("journal", records=clones[start : start + CHUNK],
                                                 columns=list(EVENT_COLUMNS))  # fmt: skip
            await conn.executemany(_task_copy(["$1", "$2", "$3"]),
                                   [(t, s, live) for t, s in live_tasks])  # fmt: skip
            top = clones[-1][0] if clones else int(rows[-1][0])
            await conn.execute("SELECT setval('journal_seq', $1)", top)
            await conn.execute("UPDATE meta SET value = $1 WHERE key = 'projection_floor'",
                               str(top))  # fmt: skip
        await conn.execute("ANALYZE journal")
    finally:
        await conn.close()
    return len(live_tasks) + 1


async def build(url: str, events: int) -> int:
    journal = journal_from_url(url)
    await journal.open()
    try:
        gone, live = await _templates(journal)
    finally:
        await journal.close()
    if url.startswith("sqlite"):
        return _build_sqlite(url, gone, live, events)
    return await _build_postgres(url, gone, live, events)


async def step(url: str, name: str) -> dict[str, Any]:
    journal = journal_from_url(url)
    await journal.open()
    try:
        began = time.perf_counter()
        out: dict[str, Any] = {}
        if name == "seal":
            out["seals"] = len(await seal_all(journal, None, "bench"))
        elif name == "verify":
            report = await audit.verify_seals(journal, None)
            assert report.ok, report
            assert report.unsealed_rows == 0, report
            out["rows"] = report.sealed_rows
        else:
            done = await audit.replay_all(journal)
            out["tasks"], out["events"] = len(done.tasks), done.count
            out["seconds_full"] = round(time.perf_counter() - began, 2)
            head = await journal.head()
            rows = [
                r
                async for r in journal.journal_rows(
                    head.journal_seq // 2, head.journal_seq // 2 + 1
                )
            ]
            middle = float(rows[0][EVENT_COLUMNS.index("at")])
            began = time.perf_counter()
            until = await audit.replay_all(journal, until=middle)
            out["tasks_until_middle"] = len(until.tasks)
            out["seconds_until_middle"] = round(time.perf_counter() - began, 2)
            return {**out, "rss_mib": _rss()}
        out["seconds"] = round(time.perf_counter() - began, 2)
        return {**out, "rss_mib": _rss()}
    finally:
        await journal.close()


def _rss() -> float:
    """This process's peak RSS in MiB: VmHWM, which starts afresh at exec (ru_maxrss would
    carry the parent's peak, the bulk build, into the child)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _fresh_url(given: str | None, folder: str) -> str:
    if given is None:
        return f"sqlite:///{folder}/journal.db"
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in given else "?"
    return f"{given}{sep}schema={schema}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="postgresql://... (default: a SQLite file)")
    parser.add_argument("--step", choices=("seal", "verify", "replay"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:  # a child: one step on the journal built by the parent
        print(json.dumps(asyncio.run(step(args.database_url, args.step))))
        return
    with tempfile.TemporaryDirectory() as folder:
        url = _fresh_url(args.database_url, folder)
        began = time.perf_counter()
        live = asyncio.run(build(url, args.events))
        result: dict[str, Any] = {
            "backend": "sqlite" if url.startswith("sqlite") else "postgres",
            "events": args.events, "live_tasks": live,
            "build_seconds": round(time.perf_counter() - began, 1),
        }  # fmt: skip
        for name in ("seal", "verify", "replay"):
            child = subprocess.run(
                [sys.executable, __file__, "--database-url", url, "--step", name],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            result[name] = json.loads(child.stdout.strip().splitlines()[-1])
        for name in ("seal", "verify"):
            result[name]["events_per_second"] = round(args.events / result[name]["seconds"])
        print(json.dumps(result))
        if not url.startswith("sqlite"):
            asyncio.run(_drop(url))


async def _drop(url: str) -> None:
    dsn, schema = split_url(url)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
