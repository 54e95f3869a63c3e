"""A client App (no node in its process): what it reads before it writes, and how long it
trusts what it read; on PostgreSQL, a lone enqueue is one statement, and a large batch the
parts of one transaction."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from conftest import PG_DSN

import actorq
import actorq.app
import actorq.journal.pg_submit as pg_submit
import actorq.lifecycle as lifecycle
from actorq.errors import QueueFull
from actorq.journal import journal_from_url
from actorq.journal.base import ConfigureQueue, Journal, Outcome, Submit
from actorq.model import Event, EventKind, NewTask, Task, TaskState
from actorq.queues import parse_patch
from actorq.retry import policy_from_json

FIXED = {"backoff": "fixed", "base": 7, "jitter": 0}


def worker(database_url: str, *types: str) -> actorq.App:
    app = actorq.App(database_url=database_url, concurrency=1, node=f"node-{'-'.join(types)}")
    for name in types:

        @app.task(name)
        async def handler(payload: Any) -> None:
            return None

    return app


async def test_a_type_a_new_node_serves_is_usable_at_once_and_an_unknown_one_refused(
    database_url: str,
) -> None:
    first, second = worker(database_url, "a"), worker(database_url, "b")
    async with first, second, actorq.App(database_url=database_url) as client:
        await first.start()
        await client.enqueue("a")  # the catalog is read now, and kept
        await second.start()
        task = await client.enqueue("b")  # unknown to what was kept: read again
        assert task.type == "b"
        with pytest.raises(actorq.UnknownTaskType):
            await client.enqueue("nobody-serves-this")


async def test_a_queues_new_policy_reaches_a_client_once_what_it_kept_is_stale(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actorq.app, "CLIENT_CACHE_SECONDS", 3600.0)
    node = worker(database_url, "a")
    async with node, actorq.App(database_url=database_url) as client:
        runtime = await node.start()
        before = await client.enqueue("a", queue="slow")
        change = ConfigureQueue("slow", parse_patch({"retry": FIXED}), time.time(), "test")
        (outcome,) = await runtime.journal.run([change])
        outcome.unwrap()
        kept = await client.enqueue("a", queue="slow")
        assert kept.retry == before.retry != policy_from_json(FIXED)  # still what it read
        monkeypatch.setattr(actorq.app, "CLIENT_CACHE_SECONDS", 0.0)
        fresh = await client.enqueue("a", queue="slow")
        assert fresh.retry == policy_from_json(FIXED)


async def test_a_lone_client_enqueue_is_one_statement_on_postgresql(postgres_url: str) -> None:
    node = worker(postgres_url, "a")
    async with node, actorq.App(database_url=postgres_url) as client:
        await node.start()
        await client.enqueue("a")  # opens the journal, reads the catalog and the policies
        sent: list[str] = []
        # Submissions run on a connection of their own, outside the pool (pg_submit), which
        # the pool's connections would otherwise see.
        own = client._journal._submitter._conn  # type: ignore[union-attr]
        assert own is not None
        own.add_query_logger(lambda record: sent.append(record.query))
        pooled: list[str] = []
        pool = client._journal._pool  # type: ignore[union-attr]
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: pooled.append(record.query))
        tasks = [await client.enqueue("a", {"i": i}) for i in range(5)]
        await asyncio.sleep(0)  # asyncpg calls query loggers soon after the query, not in it
        assert len(sent) == 5, sent
        assert all("submit_rows" in query for query in sent)
        assert pooled == []
        journal = node.runtime.journal  # type: ignore[union-attr]
        # The node may have run them by now: their first events are what the enqueue wrote.
        firsts = [(await journal.history(t.id))[0] for t in tasks]
        assert [e.kind for e in firsts] == [EventKind.SUBMITTED] * 5
        assert [e.seq for e in firsts] == [t.seq for t in tasks] == sorted(t.seq for t in tasks)


async def test_a_client_whose_submitting_connection_was_killed_enqueues_once_on_a_new_one(
    postgres_url: str,
) -> None:
    """The connection submissions run on is the client's own (pg_submit): if the server ends
    it while idle, the next enqueue opens another, and the task is written exactly once."""
    node = worker(postgres_url, "a")
    async with node, actorq.App(database_url=postgres_url) as client:
        await node.start()
        await client.enqueue("a")
        own = client._journal._submitter._conn  # type: ignore[union-attr]
        assert own is not None
        conn = await asyncpg.connect(PG_DSN)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", own.get_server_pid())
        finally:
            await conn.close()
        task = await client.enqueue("a", {"after": "kill"})
        assert client._journal._submitter._conn is not own  # type: ignore[union-attr]
        history = await node.runtime.journal.history(task.id)  # type: ignore[union-attr]
        kinds = [e.kind for e in history]
        assert kinds[0] is EventKind.SUBMITTED
        assert kinds.count(EventKind.SUBMITTED) == 1
        assert (await client.get(task.id)).payload == {"after": "kill"}


async def test_submissions_that_a_limit_or_a_key_concerns_take_the_general_path(
    postgres_url: str,
) -> None:
    """The one-statement path writes nothing when a queue has a max_depth or a live task holds
    a key: the general path then decides, and says why."""
    journal = journal_from_url(postgres_url)
    await journal.open()
    try:
        at = time.time()

        async def submit(*tasks: NewTask) -> Any:
            (outcome,) = await journal.run([Submit(tasks, at, "test")])
            return outcome.unwrap()

        (held,) = await submit(NewTask("job", idempotency_key="k"))
        with pytest.raises(actorq.DuplicateTask) as raised:
            await submit(NewTask("job", idempotency_key="k"), NewTask("job"))
        assert raised.value.existing_id == held.id
        change = ConfigureQueue("small", parse_patch({"max_depth": 1}), at, "test")
        (outcome,) = await journal.run([change])
        outcome.unwrap()
        await submit(NewTask("job", queue="small"))
        with pytest.raises(QueueFull):
            await submit(NewTask("job", queue="small"))
        counts = await journal.counts()
        assert counts == {("default", TaskState.QUEUED): 1, ("small", TaskState.QUEUED): 1}
    finally:
        await journal.close()


async def test_concurrent_client_enqueues_share_commits_and_a_bad_one_fails_alone(
    database_url: str,
) -> None:
    node = worker(database_url, "a")
    async with node, actorq.App(database_url=database_url) as client:
        await node.start()
        await client.enqueue("a")

        async def bad() -> None:
            await client.submit([NewTask("a", priority=2**63)])  # no database stores it

        calls = [client.enqueue("a", {"i": i}) for i in range(30)]
        results = await asyncio.gather(*calls[:15], bad(), *calls[15:], return_exceptions=True)
        assert isinstance(results[15], actorq.InvalidInput)
        tasks = [r for r in results if isinstance(r, Task)]
        assert len(tasks) == 30
        got = await node.runtime.journal.get_many([t.id for t in tasks])  # type: ignore[union-attr]
        assert sorted(got) == sorted(t.id for t in tasks)


async def test_concurrent_client_enqueues_go_in_fewer_transactions_than_callers(
    postgres_url: str, db: asyncpg.Connection
) -> None:
    node = worker(postgres_url, "a")
    async with node, actorq.App(database_url=postgres_url) as client:
        await node.start()
        await client.enqueue("a")
        tasks = await asyncio.gather(*(client.enqueue("a", {"i": i}) for i in range(40)))
    xids = await db.fetchval(
        "SELECT count(DISTINCT xid::text) FROM journal WHERE task_id = ANY($1::text[])",
        [t.id for t in tasks],
    )
    assert 1 <= xids < 40


async def test_one_statement_submissions_store_what_they_answer_and_replay_to_it(
    postgres_url: str,
) -> None:
    """Every column of the one-statement path, checked against the answer and a replay: a
    task with all its fields, one scheduled later, one named by a token (its actor)."""
    journal = journal_from_url(postgres_url)
    await journal.open()
    try:
        at = time.time()
        full = NewTask("job", {"é": [1, 2.5, None]}, queue="q", priority=-7, max_attempts=9,
                       timeout=2.5, metadata={"m": "x"}, idempotency_key="key-1",
                       retry=policy_from_json(FIXED))  # fmt: skip
        later = NewTask("job", run_at=at + 3600)
        ops = [Submit([full, later], at, "node-1"), Submit([NewTask("job")], at, "n", "tok")]
        outcomes = await journal.run(ops)
        answered = [t for o in outcomes for t in o.unwrap()]
        assert [t.state for t in answered] == [TaskState.QUEUED, TaskState.SCHEDULED,
                                               TaskState.QUEUED]  # fmt: skip
        events = await stored_as_answered(journal, outcomes)
        assert [e.actor for e in events] == ["node-1", "node-1", "tok"]
    finally:
        await journal.close()


async def stored_as_answered(journal: Journal, outcomes: list[Outcome]) -> list[Event]:
    """The journal holds the events the outcomes answered with, and the projection the
    tasks they answered, which is what those events fold to. Returns the events."""
    answered = [t for o in outcomes for t in o.unwrap()]
    events = [e for t in answered for e in await journal.history(t.id)]
    assert events == [c.event for o in outcomes for c in o.changes]
    stored = await journal.get_many([t.id for t in answered])
    assert [stored[t.id] for t in answered] == answered
    assert lifecycle.fold(events) == {t.id: t for t in answered}
    return events


async def test_a_client_enqueue_survives_its_connections_being_killed(
    postgres_url: str, db: asyncpg.Connection
) -> None:
    """Killed while idle or while its statement runs, a connection's enqueue runs again on
    another, or is found committed: each enqueue answers once, and its task exists once."""
    name = f"actorq-test-{uuid.uuid4().hex[:12]}"
    client = actorq.App(database_url=f"{postgres_url}&application_name={name}")

    @client.task("a")
    async def handler(payload: Any) -> None:
        return None

    async with client:
        await client.enqueue("a")
        admin = await asyncpg.connect(PG_DSN)
        tasks = []
        try:
            for i in range(12):
                killing = admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    name,
                )
                if i % 2:  # while the enqueue is on its way
                    _, task = await asyncio.gather(killing, client.enqueue("a", {"i": i}))
                else:  # before it
                    await killing
                    task = await client.enqueue("a", {"i": i})
                tasks.append(task)
        finally:
            await admin.close()
    rows = await db.fetch(
        "SELECT task_id, count(*) FROM journal WHERE kind = 'submitted' GROUP BY task_id"
    )
    counts = dict(rows)
    assert all(counts[t.id] == 1 for t in tasks)
    assert len(counts) == 13


async def test_concurrent_first_enqueues_open_one_journal(tmp_path: Path) -> None:
    """A client App's first calls, all at once, share the journal the first one opens: each
    opened its own, and on SQLite each leaked a writer thread that kept the process alive."""
    url = f"sqlite:///{tmp_path / 'actorq.db'}"
    node = worker(url, "a")
    async with node:
        await node.start()
        before = {t for t in threading.enumerate() if t.name == "actorq-sqlite-writer"}
        client = actorq.App(database_url=url)
        tasks = await asyncio.gather(*(client.enqueue("a", {"n": i}) for i in range(20)))
        assert [t.payload for t in tasks] == [{"n": i} for i in range(20)]
        opened = {t for t in threading.enumerate() if t.name == "actorq-sqlite-writer"} - before
        assert len(opened) == 1
        await client.stop()
        assert not [t for t in opened if t.is_alive()]


def test_a_program_that_never_stops_its_client_app_still_exits(tmp_path: Path) -> None:
    """Enqueueing is all a script does: it forgets ``app.stop()`` and must still exit (the
    reading connection's thread kept it alive, a known aiosqlite 0.22 change)."""
    url = f"sqlite:///{tmp_path / 'actorq.db'}"
    script = textwrap.dedent(f"""
        import asyncio, actorq
        async def main():
            node = actorq.App(database_url={url!r})
            node.task("a")(lambda payload: None)
            await node.start()
            client = actorq.App(database_url={url!r})
            task = await client.enqueue("a")
            print(task.state.value)
            await node.stop()  # the client App is left open
        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["queued"]


async def test_a_nodes_counts_take_in_tasks_another_process_submitted(tmp_path: Path) -> None:
    """On SQLite a node's counts follow its own commits; tasks a client App submits beside it
    are read in again (they showed as -5 queued once the node had run them)."""
    url = f"sqlite:///{tmp_path / 'actorq.db'}"
    node = worker(url, "a")
    async with node, actorq.App(database_url=url) as client:
        runtime = await node.start()
        submitted = [await client.enqueue("a", {"n": i}) for i in range(5)]
        for task in submitted:
            assert (await runtime.wait_for(task.id, timeout=10)).state is TaskState.SUCCEEDED
        await asyncio.sleep(1.5)  # a recount waits a second after the one before
        tasks = (await runtime.stats())["tasks"]
        assert (tasks["queued"], tasks["succeeded"]) == (0, 5), tasks
        assert min(tasks.values()) >= 0, tasks


async def test_a_nodes_counts_never_go_below_zero_while_another_process_submits(
    tmp_path: Path,
) -> None:
    """The node claims a client's task before its counts have read that task in: a count
    that would go below zero stays at zero until the recount (it showed -1 queued)."""
    url = f"sqlite:///{tmp_path / 'actorq.db'}"
    node = worker(url, "a")
    seen: list[dict[str, int]] = []
    async with node, actorq.App(database_url=url) as client:
        runtime = await node.start()

        async def watch() -> None:
            while True:
                seen.append(dict((await runtime.stats())["tasks"]))
                await asyncio.sleep(0.002)

        watching = asyncio.ensure_future(watch())
        try:
            submitted = [await client.enqueue("a", {"n": i}) for i in range(20)]
            for task in submitted:
                assert (await runtime.wait_for(task.id, timeout=10)).state is TaskState.SUCCEEDED
        finally:
            watching.cancel()
    assert len(seen) >= 5  # the counts were read while the node worked
    assert [t for t in seen if min(t.values()) < 0] == []


async def test_a_sqlite_nodes_live_feed_carries_what_another_process_commits(
    tmp_path: Path,
) -> None:
    """A web app's enqueues into the file of ``actorq serve`` reach the node's live
    subscribers (SSE, the dashboard) as ``submitted`` items, in seq order with the node's own
    (they were missing: only the node's claims and outcomes came)."""
    url = f"sqlite:///{tmp_path / 'actorq.db'}"
    node = worker(url, "a")
    async with node, actorq.App(database_url=url) as client:
        runtime = await node.start()
        async with runtime.live_events() as feed:
            submitted = [await client.enqueue("a", {"n": i}) for i in range(5)]
            ids = {t.id for t in submitted}
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(10):
                while sum(1 for i in seen if i["kind"] == "succeeded") < 5:
                    seen.append(await feed.get())
    assert all(item["kind"] != "lagged" for item in seen), seen
    kinds = {(i["task_id"], i["kind"]) for i in seen}
    assert {(tid, "submitted") for tid in ids} <= kinds
    submitted_items = [i for i in seen if i["kind"] == "submitted"]
    assert all(i["queue"] == "default" and i["type"] == "a" for i in submitted_items)
    seqs = [i["seq"] for i in seen]
    assert seqs == sorted(set(seqs))  # each once, in the journal's order
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # and none skipped


# -- a batch larger than pg_submit.PART: parts of one transaction, each sent while the client
# builds the next; it commits whole or not at all, and answers in its order.


async def test_a_batch_in_parts_is_one_transaction_that_answers_in_order(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_submit, "PART", 3)
    journal = journal_from_url(postgres_url)
    await journal.open()
    try:
        at = time.time()
        first = [NewTask("job", {"i": i}) for i in range(5)]
        second = [NewTask("job", {"i": i}, run_at=at + 3600, queue="later") for i in range(3)]
        await journal.run([Submit([NewTask("warm")], at, "node-1")])  # opens its connection
        sent: list[str] = []
        own = journal._submitter._conn  # type: ignore[attr-defined]
        own.add_query_logger(lambda record: sent.append(record.query))
        outcomes = await journal.run(
            [Submit(first, at, "node-1"), Submit(second, at, "node-2", "tok")]
        )
        await asyncio.sleep(0)  # asyncpg calls query loggers soon after the query
        assert [q for q in sent if "submit_rows" in q] == [sent[1]] * 3  # 8 tasks, parts of 3
        assert sent[0] == "BEGIN;", sent
        assert sent[-1] == "COMMIT;", sent
        answered = [t for o in outcomes for t in o.unwrap()]
        assert [t.id for t in answered] == [n.id for n in first + second]
        assert [t.state for t in answered] == [TaskState.QUEUED] * 5 + [TaskState.SCHEDULED] * 3
        seqs = [t.seq for t in answered]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 8
        events = await stored_as_answered(journal, outcomes)
        assert [e.actor for e in events] == ["node-1"] * 5 + ["tok"] * 3
    finally:
        await journal.close()


async def test_a_gate_in_a_later_part_sends_the_whole_batch_down_the_general_path(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first part was written when the third meets a queue with a max_depth: all of it
    goes back, and the general path refuses the batch whole, saying why."""
    monkeypatch.setattr(pg_submit, "PART", 2)
    journal = journal_from_url(postgres_url)
    await journal.open()
    try:
        at = time.time()
        change = ConfigureQueue("small", parse_patch({"max_depth": 1}), at, "test")
        (outcome,) = await journal.run([change])
        outcome.unwrap()
        batch = [NewTask("job") for _ in range(4)]
        batch += [NewTask("job", queue="small"), NewTask("job", queue="small")]
        (outcome,) = await journal.run([Submit(batch, at, "node-1")])
        with pytest.raises(QueueFull):
            outcome.unwrap()
        assert await journal.counts() == {}
        assert await journal.get_many([new.id for new in batch]) == {}
        # Within the limit, the same path takes the batch whole.
        fits = [NewTask("job") for _ in range(4)] + [NewTask("job", queue="small")]
        (outcome,) = await journal.run([Submit(fits, at, "node-1")])
        assert len(outcome.unwrap()) == 5
        assert await journal.counts() == {
            ("default", TaskState.QUEUED): 4,
            ("small", TaskState.QUEUED): 1,
        }
    finally:
        await journal.close()


async def test_batches_in_parts_whose_connection_is_killed_are_written_once(
    postgres_url: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between or during its parts, a batch's transaction either committed whole
    (found so, and answered) or not at all (run again on another connection)."""
    monkeypatch.setattr(pg_submit, "PART", 4)
    name = f"actorq-test-{uuid.uuid4().hex[:12]}"
    client = actorq.App(database_url=f"{postgres_url}&application_name={name}")

    @client.task("a")
    async def handler(payload: Any) -> None:
        return None

    answered = []
    async with client:
        await client.enqueue("a")
        admin = await asyncpg.connect(PG_DSN)
        try:
            for i in range(8):
                killing = admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    name,
                )
                items = [{"type": "a", "payload": {"i": i, "k": k}} for k in range(13)]
                _, tasks = await asyncio.gather(killing, client.enqueue_many(items))
                answered += tasks
        finally:
            await admin.close()
    counts = dict(
        await db.fetch(
            "SELECT task_id, count(*) FROM journal WHERE kind = 'submitted' GROUP BY task_id"
        )
    )
    assert len(answered) == 8 * 13
    assert all(counts[t.id] == 1 for t in answered)
    assert len(counts) == 8 * 13 + 1


async def test_a_batch_in_parts_cancelled_midway_writes_nothing_and_its_caller_is_cancelled(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while its parts go out, the batch's transaction is rolled back and the caller
    gets its CancelledError: the batch is not run again elsewhere."""
    monkeypatch.setattr(pg_submit, "PART", 20)
    journal = journal_from_url(postgres_url)
    await journal.open()
    try:
        await journal.run([Submit([NewTask("job")], time.time(), "node-1")])
        parts: list[str] = []
        three_sent = asyncio.Event()

        def count(record: Any) -> None:
            if "submit_rows" in record.query:
                parts.append(record.query)
            if len(parts) == 3:
                three_sent.set()

        journal._submitter._conn.add_query_logger(count)  # type: ignore[attr-defined]
        batch = [NewTask("job") for _ in range(2000)]
        running = asyncio.ensure_future(journal.run([Submit(batch, time.time(), "node-1")]))
        await asyncio.wait_for(three_sent.wait(), 10)
        assert not running.done()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert await journal.get_many([new.id for new in batch]) == {}
        (outcome,) = await journal.run([Submit([NewTask("job")], time.time(), "node-1")])
        assert len(outcome.unwrap()) == 1
        assert await journal.counts() == {("default", TaskState.QUEUED): 2}
    finally:
        await journal.close()
