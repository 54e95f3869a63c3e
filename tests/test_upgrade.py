"""A database written by the version before held tasks (schema version 1) opens, migrates and
still replays: its journal's claims were starts, and its projection is folded again."""

from __future__ import annotations

import sqlite3
from typing import Any

import asyncpg
import attrs
import pytest

import actorq.lifecycle as lifecycle
from actorq.audit import verify_projection
from actorq.journal import journal_from_url
from actorq.journal.postgres import split_url
from actorq.journal.rows import TASK_COLUMNS, dumps, event_to_row, migrations, task_to_row
from actorq.journal.sqlite import _statements, path_from_url
from actorq.model import Event, EventKind, NewTask, TaskState

K = EventKind
VERSION_1_COLUMNS = TASK_COLUMNS[: TASK_COLUMNS.index("lease_expires_at") + 1]
LEASE = {"lease_expires_at": 1_000.0}


def legacy_journal() -> list[Event]:
    """Events as version 1 wrote them: a claim (without ``held``) started the handler."""
    a, b, c = (NewTask("job", id=name) for name in ("task-a", "task-b", "task-c"))
    events = [
        lifecycle.submitted_event(a, at=100.0, node="n"),
        Event(K.CLAIMED, a.id, 101.0, "n", LEASE, "n/w0"),
        Event(K.FAILED, a.id, 102.0, "n", {"error": "boom", "retry_at": 103.0}, "n/w0"),
        Event(K.ENQUEUED, a.id, 103.0, "n"),
        Event(K.CLAIMED, a.id, 104.0, "n", LEASE, "n/w1"),
        Event(K.SUCCEEDED, a.id, 105.0, "n", {"result": 1}, "n/w1"),
        lifecycle.submitted_event(b, at=106.0, node="n"),
        Event(K.CANCELLED, b.id, 107.0, "n", {"reason": "cancelled"}),
        lifecycle.submitted_event(c, at=108.0, node="n"),
        Event(K.CLAIMED, c.id, 109.0, "n", LEASE, "n/w2"),
    ]
    return [attrs.evolve(e, seq=n) for n, e in enumerate(events, start=1)]


def legacy_rows(events: list[Event]) -> tuple[list[Any], list[Any]]:
    """The journal's rows, and the projection version 1 kept: it left the failed attempt's
    error on a task that then succeeded, and wrote the reason of a cancel as its error."""
    tasks = lifecycle.fold(events)
    tasks["task-a"] = attrs.evolve(tasks["task-a"], error="boom")
    tasks["task-b"] = attrs.evolve(tasks["task-b"], error="cancelled")
    # Version 1's columns: those added since (retry, 007) are not there yet.
    width = len(VERSION_1_COLUMNS)
    # A version 1 journal has no actor column (migration 008 added it, last).
    return [event_to_row(e)[:7] for e in events], [task_to_row(t)[:width] for t in tasks.values()]


async def write_version_1(url: str) -> None:
    (number, schema), *_ = migrations("sqlite" if url.startswith("sqlite") else "postgres")
    assert number == 1
    events, tasks = legacy_rows(legacy_journal())
    columns, marks = ", ".join(VERSION_1_COLUMNS), len(VERSION_1_COLUMNS)
    if url.startswith("sqlite"):
        db = sqlite3.connect(path_from_url(url))
        for statement in _statements(schema):
            db.execute(statement)
        db.execute("CREATE TABLE schema_version (version INTEGER)")
        db.execute("INSERT INTO schema_version VALUES (1)")
        db.executemany("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?)", events)
        db.executemany(f"INSERT INTO tasks ({columns}) VALUES ({', '.join('?' * marks)})", tasks)
        db.execute("UPDATE meta SET value = '10' WHERE key = 'projection_seq'")
        db.commit()
        db.close()
        return
    dsn, name = split_url(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": f'"{name}"'})
    try:
        await conn.execute(schema)
        await conn.execute("CREATE TABLE schema_version (version integer)")
        await conn.execute("INSERT INTO schema_version VALUES (1)")
        await conn.executemany(
            "INSERT INTO journal (seq, at, task_id, kind, node, worker, data) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            events,
        )
        places = ", ".join(f"${n}" for n in range(1, marks + 1))
        await conn.executemany(f"INSERT INTO tasks ({columns}) VALUES ({places})", tasks)
        await conn.execute("SELECT setval('journal_seq', 10)")
    finally:
        await conn.close()


async def test_a_version_1_database_upgrades_and_its_journal_still_replays(
    database_url: str,
) -> None:
    await write_version_1(database_url)
    journal = journal_from_url(database_url)
    await journal.open()
    try:
        report = await verify_projection(journal)
        assert report.matches, report.as_json()
        assert report.events == 10
        a, b, c = [await journal.get(f"task-{n}") for n in "abc"]
        assert (a.state, a.attempt, a.error, a.result) == (TaskState.SUCCEEDED, 2, None, 1)
        assert (b.state, b.error) == (TaskState.CANCELLED, None)
        # Claimed by version 1: its handler was running, and its attempt counted.
        assert (c.state, c.attempt, c.started_at, c.worker) == (
            TaskState.RUNNING, 1, 109.0, "n/w2",
        )  # fmt: skip
    finally:
        await journal.close()
    reopened = journal_from_url(database_url)
    await reopened.open()  # now current: opens without folding again
    try:
        assert (await verify_projection(reopened)).matches
    finally:
        await reopened.close()


@pytest.mark.postgres
async def test_the_previous_versions_submit_tasks_still_submits(postgres_url: str) -> None:
    """A node of the version before migration 016 calls submit_tasks, one array per column;
    the migrated database answers it through submit_rows: same gate, same rows."""
    journal = journal_from_url(postgres_url)
    await journal.open()
    dsn, name = split_url(postgres_url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": f'"{name}"'})
    try:
        call = (
            "SELECT submit_tasks($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], "
            "$6::text[], $7::int[], $8::float8[], $9::float8[], $10::float8[], $11::text[], "
            "$12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text, "
            "$18::text[])"
        )
        new = [NewTask("job", {"n": n}, id=f"old-{n}", priority=n,
                       idempotency_key="key-1" if n == 1 else None) for n in range(3)]  # fmt: skip
        events = [lifecycle.submitted_event(t, at=50.0, node="old") for t in new]
        columns = (
            [t.id for t in new], [t.type for t in new], [t.queue for t in new],
            [dumps(t.payload) for t in new], [t.priority for t in new], ["queued"] * 3,
            [t.max_attempts for t in new], [None] * 3, [50.0] * 3, [50.0] * 3,
            [dumps(t.metadata) for t in new], [t.idempotency_key for t in new], [None] * 3,
            ["old"] * 3, [dumps(e.data) for e in events], ["old"] * 3,
        )  # fmt: skip
        seqs = await conn.fetchval(call, *columns, "actorq_test", [])
        assert len(seqs) == 3
        assert seqs == sorted(seqs)
        for task, seq in zip(new, seqs, strict=True):
            stored = await journal.get(task.id)
            assert (stored.seq, stored.priority, stored.payload, stored.state) == (
                seq, task.priority, task.payload, TaskState.QUEUED,
            )  # fmt: skip
            assert [e.kind for e in await journal.history(task.id)] == [K.SUBMITTED]
        assert (await journal.get("old-1")).idempotency_key == "key-1"
        # The gate holds for it too: a live task holds key-1, so nothing is written.
        again = [[f"old-{n}-again"] if i == 0 else [c[n]] for i, c in enumerate(columns)
                 for n in (1,)]  # fmt: skip
        assert await conn.fetchval(call, *again, "actorq_test", []) is None
        assert (await verify_projection(journal)).matches
    finally:
        await conn.close()
        await journal.close()
