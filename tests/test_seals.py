"""The journal proves it was not altered: seals, `journal verify`, head and --expect, on both
backends, against real tampering.

Each tamper test builds a sealed journal, changes the database behind actorq's back the way a
forger with access to it would (an edit in the SQLite file's bytes, dropped triggers, a
PostgreSQL superuser past the triggers), and checks that `actorq journal verify` exits 1
naming the right seq and what happened to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from actorq.actors.sealer import seal_all
from actorq.cli import main
from actorq.errors import StorageError
from actorq.journal import journal_from_url
from actorq.journal.base import Journal, Submit
from actorq.journal.postgres import split_url
from actorq.journal.sqlite import path_from_url
from actorq.model import NewTask

TASKS = 12


def _is_pg(url: str) -> bool:
    return url.startswith("postgres")


async def _with_journal(url: str, body: Any) -> Any:
    journal = journal_from_url(url)
    await journal.open()
    try:
        return await body(journal)
    finally:
        await journal.close()


def build(url: str, tasks: int = TASKS, key: bytes | None = None) -> list[str]:
    """A journal of ``tasks`` submitted tasks (payload ``{"note": "pay-NNNN-aaaa"}``), sealed
    in several seals (one per submit batch of three); the task ids, in order."""

    async def body(journal: Journal) -> list[str]:
        ids: list[str] = []
        for start in range(0, tasks, 3):
            batch = [
                NewTask("echo", {"note": f"pay-{i:04d}-aaaa"}) for i in range(start, start + 3)
            ]
            (out,) = await journal.run([Submit(batch, time.time(), "test")])
            ids += [t.id for t in out.unwrap()]
            await seal_all(journal, key, "test")
        return ids

    result: list[str] = asyncio.run(_with_journal(url, body))
    return result


def sql(url: str, *statements: str, replica: bool = False) -> list[Any]:
    """Run statements on the database directly, as a forger would; the last one's rows."""
    if not _is_pg(url):
        db = sqlite3.connect(path_from_url(url), isolation_level=None)
        try:
            rows: list[Any] = []
            for statement in statements:
                rows = db.execute(statement).fetchall()
            return rows
        finally:
            db.close()

    async def run() -> list[Any]:
        dsn, schema = split_url(url)
        conn = await asyncpg.connect(dsn, server_settings={"search_path": str(schema)})
        try:
            if replica:  # a superuser's session: triggers do not fire
                await conn.execute("SET session_replication_role = replica")
            found: list[Any] = []
            for statement in statements:
                found = list(await conn.fetch(statement))
            return found
        finally:
            await conn.close()

    result: list[Any] = asyncio.run(run())
    return result


def drop_triggers(url: str) -> list[str]:
    if _is_pg(url):
        return ["DROP TRIGGER journal_no_change ON journal"]
    return ["DROP TRIGGER journal_no_update", "DROP TRIGGER journal_no_delete"]


def verify(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["journal", "verify", "--database-url", url, *extra])
    return code, json.loads(capsys.readouterr().out)


def seq_of(url: str, task_id: str, kind: str = "submitted") -> int:
    (row,) = sql(url, f"SELECT seq FROM journal WHERE task_id = '{task_id}' AND kind = '{kind}'")
    return int(row[0])


def test_a_sealed_journal_verifies_and_head_names_its_last_seal(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    build(database_url)
    code, report = verify(capsys, database_url)
    assert code == 0, report
    assert report["verified"] is True
    assert report["seals"]["sealed_rows"] == TASKS
    assert report["seals"]["seals"] == TASKS // 3
    assert report["seals"]["unsealed_rows"] == 0

    assert main(["journal", "head", "--database-url", database_url]) == 0
    head = json.loads(capsys.readouterr().out)
    assert head["seq"] == TASKS
    assert head["hash"].startswith("sha256:")
    code, report = verify(capsys, database_url, "--expect", head["expect"])
    assert code == 0
    assert report["seals"]["expect_found"] is True
    code, report = verify(capsys, database_url, "--expect", f"{TASKS}:sha256:{'0' * 64}")
    assert code == 1
    assert report["seals"]["expect_found"] is False


def test_rows_past_the_last_seal_are_reported_unsealed(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    build(database_url)

    async def more(journal: Journal) -> None:
        (out,) = await journal.run([Submit([NewTask("echo", {}) for _ in range(2)], time.time(),
                                           "test")])  # fmt: skip
        out.unwrap()

    asyncio.run(_with_journal(database_url, more))
    code, report = verify(capsys, database_url)
    assert code == 0  # not altered, only not sealed yet
    assert report["seals"]["unsealed_rows"] == 2
    assert report["seals"]["first_unsealed"] == TASKS + 1


def test_a_payload_edited_in_journal_and_projection_alike_is_caught(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The forger changes the payload wherever it is: the replay still matches the
    projection, the seal does not. SQLite: the bytes of the file itself (no trigger can see
    that). PostgreSQL: a superuser with triggers off (session_replication_role = replica)."""
    ids = build(database_url)
    target = seq_of(database_url, ids[7])
    if _is_pg(database_url):
        sql(
            database_url,
            "UPDATE journal SET data = replace(data, 'pay-0007-aaaa', 'pay-0007-zzzz')",
            "UPDATE tasks SET payload = replace(payload, 'pay-0007-aaaa', 'pay-0007-zzzz')",
            replica=True,
        )
    else:
        path = Path(path_from_url(database_url))
        raw = path.read_bytes()
        assert raw.count(b"pay-0007-aaaa") == 2  # the submitted event and the task's row
        path.write_bytes(raw.replace(b"pay-0007-aaaa", b"pay-0007-zzzz"))
    code, report = verify(capsys, database_url)
    assert code == 1
    assert report["matches"] is True  # the projection alone would not tell
    assert report["seals"]["problem"]["kind"] == "altered"
    assert report["seals"]["problem"]["seq"] == target


def test_a_row_edited_after_dropping_the_trigger_is_caught(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = build(database_url)
    target = seq_of(database_url, ids[4])
    sql(database_url, *drop_triggers(database_url),
        f"UPDATE journal SET node = 'someone-else' WHERE seq = {target}")  # fmt: skip
    code, report = verify(capsys, database_url)
    assert code == 1
    assert report["seals"]["problem"] == {
        "kind": "altered", "seq": target, "message": f"seq {target} differs from what was sealed"
    }  # fmt: skip


def test_a_deleted_row_is_reported_missing(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = build(database_url)
    target = seq_of(database_url, ids[5])
    sql(database_url, *drop_triggers(database_url), f"DELETE FROM journal WHERE seq = {target}")
    code, report = verify(capsys, database_url)
    assert code == 1
    assert report["seals"]["problem"]["kind"] == "missing"
    assert report["seals"]["problem"]["seq"] == target


def test_two_swapped_rows_are_reported_reordered(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = build(database_url)
    a, b = seq_of(database_url, ids[3]), seq_of(database_url, ids[4])  # of one seal
    columns = "at, task_id, kind, node, worker, data"
    swap = [
        f"CREATE TABLE swap AS SELECT seq, {columns} FROM journal WHERE seq IN ({a}, {b})",
        *[
            f"UPDATE journal SET ({columns}) = (SELECT {columns} FROM swap WHERE seq = {other}) "
            f"WHERE seq = {mine}"
            for mine, other in ((a, b), (b, a))
        ],
    ]
    sql(database_url, *drop_triggers(database_url), *swap)
    code, report = verify(capsys, database_url)
    assert code == 1
    assert report["seals"]["problem"]["kind"] == "reordered"
    assert report["seals"]["problem"]["seq"] == a


def test_a_task_erased_from_journal_and_projection_alike_is_reported_missing(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = build(database_url)
    gone = ids[9]
    first = seq_of(database_url, gone)
    sql(database_url, *drop_triggers(database_url),
        f"DELETE FROM journal WHERE task_id = '{gone}'",
        f"DELETE FROM tasks WHERE id = '{gone}'")  # fmt: skip
    code, report = verify(capsys, database_url)
    assert code == 1
    assert report["matches"] is True  # the projection agrees with what is left
    assert report["seals"]["problem"]["kind"] == "missing"
    assert report["seals"]["problem"]["seq"] == first


def test_a_row_slipped_into_a_sealed_gap_is_reported_inserted(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seqs can have gaps (PostgreSQL: a rolled-back transaction's numbers): a seal covers its
    gap, so a row written into it later is caught."""
    build(database_url)
    top = TASKS
    row = "seq, at, task_id, kind, node, worker, data"
    # a submission of a task of its own, copied from the last one
    copy = (
        f"SELECT {{seq}}, at, '{{task}}', kind, node, worker, data FROM journal WHERE seq = {top}"
    )
    sql(database_url, f"INSERT INTO journal ({row}) {copy.format(seq=top + 10, task='gap')}")
    if _is_pg(database_url):  # numbers up to there were drawn, some by rolled-back writers
        sql(database_url, f"SELECT setval('journal_seq', {top + 10})")
    asyncio.run(_with_journal(database_url, lambda j: seal_all(j, None, "test")))
    sql(database_url, f"INSERT INTO journal ({row}) {copy.format(seq=top + 5, task='forged')}")
    code, report = verify(capsys, database_url)
    assert code == 1
    assert report["seals"]["problem"]["kind"] == "inserted"
    assert report["seals"]["problem"]["seq"] == top + 5


def test_a_removed_seal_breaks_the_chain(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    build(database_url)
    drop = (["DROP TRIGGER seals_no_change ON seals"] if _is_pg(database_url)
            else ["DROP TRIGGER seals_no_delete"])  # fmt: skip
    sql(database_url, *drop, "DELETE FROM seals WHERE last_seq = 6")
    code, report = verify(capsys, database_url)
    assert code == 1
    assert report["seals"]["problem"]["kind"] == "chain"
    assert report["seals"]["problem"]["seq"] == 7


def test_the_journal_and_its_seals_refuse_updates_and_deletes(database_url: str) -> None:
    build(database_url)
    errors = (sqlite3.DatabaseError, asyncpg.PostgresError)
    for statement in (
        "UPDATE journal SET node = 'x' WHERE seq = 1",
        "DELETE FROM journal WHERE seq = 1",
        "UPDATE seals SET hash = 'x'",
        "DELETE FROM seals",
        "DELETE FROM journal",
    ):
        with pytest.raises(errors, match="append-only"):
            sql(database_url, statement)
    if _is_pg(database_url):
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            sql(database_url, "TRUNCATE journal")
    assert len(sql(database_url, "SELECT seq FROM journal")) == TASKS


def test_keyed_seals_need_the_key_and_refuse_an_unkeyed_chain(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build(database_url, key=b"s3cret")
    monkeypatch.setenv("ACTORQ_JOURNAL_KEY", "s3cret")
    code, report = verify(capsys, database_url)
    assert code == 0, report
    assert main(["journal", "head", "--database-url", database_url]) == 0
    assert json.loads(capsys.readouterr().out)["hash"].startswith("hmac-sha256:")

    monkeypatch.setenv("ACTORQ_JOURNAL_KEY", "guessed")
    code, report = verify(capsys, database_url)
    assert code == 1
    assert report["seals"]["problem"]["kind"] == "seal"  # rows intact, hashes not ours

    monkeypatch.delenv("ACTORQ_JOURNAL_KEY")
    code, report = verify(capsys, database_url)
    assert code == 1
    assert report["seals"]["problem"]["kind"] == "key"


def test_a_chain_forged_without_the_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forger who can write the database but lacks the key can only write unkeyed seals:
    with the key set, verify refuses them."""
    url = f"sqlite:///{tmp_path}/forged.db"
    build(url, key=None)
    monkeypatch.setenv("ACTORQ_JOURNAL_KEY", "s3cret")
    code, report = verify(capsys, url)
    assert code == 1
    assert report["seals"]["problem"]["kind"] == "unkeyed"
    assert report["seals"]["problem"]["seq"] == 1


def test_seal_storage_errors_are_domain_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/closed.db"
    journal = journal_from_url(url)
    with pytest.raises(StorageError):
        asyncio.run(journal.seal_head())


def test_every_column_of_a_journal_row_is_sealed(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever columns the journal has (rows.EVENT_COLUMNS), a change to any is caught."""
    from actorq.journal.rows import EVENT_COLUMNS

    ids = build(database_url)
    target = seq_of(database_url, ids[6])
    sql(database_url, *drop_triggers(database_url))
    for column in EVENT_COLUMNS:
        if column == "seq":
            continue
        (before,) = sql(database_url, f"SELECT {column} FROM journal WHERE seq = {target}")
        forged = f"{column} + 1" if column == "at" else "'forged'"
        sql(database_url, f"UPDATE journal SET {column} = {forged} WHERE seq = {target}")
        code, report = verify(capsys, database_url)
        assert code == 1, column
        assert (report["seals"]["problem"]["kind"], report["seals"]["problem"]["seq"]) == (
            "altered", target), column  # fmt: skip
        _set(database_url, column, before[0], target)
        assert verify(capsys, database_url)[0] == 0, column


def _set(url: str, column: str, value: Any, seq: int) -> None:
    if not _is_pg(url):
        db = sqlite3.connect(path_from_url(url), isolation_level=None)
        try:
            db.execute(f"UPDATE journal SET {column} = ? WHERE seq = ?", (value, seq))
        finally:
            db.close()
        return

    async def run() -> None:
        dsn, schema = split_url(url)
        conn = await asyncpg.connect(dsn, server_settings={"search_path": str(schema)})
        try:
            await conn.execute(f"UPDATE journal SET {column} = $1 WHERE seq = $2", value, seq)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.mark.postgres
async def test_no_seal_covers_a_seq_whose_transaction_is_still_in_flight(
    postgres_url: str,
) -> None:
    """A writer that drew a seq and has not committed yet holds sealing back: its xid may be
    the newest of all (at or past a snapshot's xmax), and a seal over its seq would find the
    row 'inserted' once it commits."""
    from actorq.journal.chain import check_chain
    from actorq.journal.rows import EVENT_COLUMNS

    journal = journal_from_url(postgres_url)
    await journal.open()
    dsn, schema = split_url(postgres_url)
    writer = await asyncpg.connect(dsn, server_settings={"search_path": str(schema)})
    try:
        (out,) = await journal.run([Submit([NewTask("echo", {})], time.time(), "test")])
        out.unwrap()
        async with writer.transaction():
            seq = await writer.fetchval(  # the journal's own way of drawing a seq
                "SELECT nextval('journal_seq') FROM generate_series(1, 1) "
                "WHERE pg_current_xact_id() IS NOT NULL"
            )
            mark = await journal.seal_mark()
            assert mark.seq >= seq
            assert not await journal.mark_final(mark)
            assert await seal_all(journal, None, "test", wait=0.2) == []  # not final: no seal
            await writer.execute(
                "INSERT INTO journal (seq, at, task_id, kind, node, data) "
                "SELECT $1, at, task_id, 'cancelled', node, '{}' FROM journal WHERE seq = 1",
                seq,
            )
        assert await journal.mark_final(mark)
        (seal,) = await seal_all(journal, None, "test")
        assert seal.last_seq >= seq
        report = await check_chain(journal.seal_list(), journal.journal_rows(), EVENT_COLUMNS,
                                   None)  # fmt: skip
        assert report.ok, report
        assert report.sealed_rows == 2
    finally:
        await writer.close()
        await journal.close()


def test_a_layout_encodes_every_row_as_the_canonical_encoding_says() -> None:
    """The layout keeps the encodings of strings that repeat; equal values of other types
    (an int and a float a tamperer swapped in) are never taken for one another."""
    from actorq.journal.rows import EVENT_COLUMNS
    from actorq.journal.seals import Layout, encode_row

    layout = Layout(",".join(EVENT_COLUMNS), EVENT_COLUMNS)
    rows = [
        (1, 10.5, "t1", "claimed", "n", "n/w0", "{}", None),
        (2, 11.0, "t1", "claimed", "n", "n/w0", '{"a":1}', "cli:me"),
        (3, 12.0, "t2", 1, 1, 1.0, "{}", 1),
        (4, 13.0, "t2", 1.0, 1.0, 1, "{}", 1.0),
        (5, 14.0, "t3", "claimed", "n", None, "\u00e9", "cli:me"),
    ]
    for row in rows:
        full, digest = layout.encode(row)
        assert full == encode_row([row[i] for i in layout.index])
        content = [row[i] for i in layout.index if EVENT_COLUMNS[i] != "seq"]
        assert digest == hashlib.sha256(encode_row(content)).digest()[:8]
    assert layout.encode(rows[2])[1] != layout.encode(rows[3])[1]
