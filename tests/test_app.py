"""The Python API: App, @app.task, enqueue, and replay of what a node journaled."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from nodes import Gates, make_registry, node_config

import actorq
from actorq import audit
from actorq.journal import journal_from_url
from actorq.model import EventKind, NewTask, TaskState
from actorq.runtime import Runtime


def make_app(database_url: str) -> actorq.App:
    app = actorq.App(database_url=database_url, concurrency=3, poll_seconds=0.1, node="app-node")

    @app.task("send_email", max_attempts=5, timeout=30)
    async def send_email(payload: Any) -> dict[str, Any]:
        return {"sent_to": payload["to"]}

    @app.task("thread_name")
    def thread_name(payload: Any, ctx: actorq.TaskContext) -> dict[str, Any]:
        return {"thread": threading.current_thread().name, "attempt": ctx.attempt}

    return app


async def test_async_and_plain_def_handlers_run_and_return_results(database_url: str) -> None:
    app = make_app(database_url)
    async with app:
        await app.start()
        email = await app.enqueue("send_email", {"to": "ada@example.com"}, priority=3)
        assert email.max_attempts == 5
        assert email.timeout == 30
        assert email.priority == 3
        threaded = await app.enqueue("thread_name")
        done = await app.wait_for(email.id, timeout=10)
        assert done.result == {"sent_to": "ada@example.com"}
        done = await app.wait_for(threaded.id, timeout=10)
        assert done.state is actorq.TaskState.SUCCEEDED
        assert done.result["thread"] != threading.current_thread().name
        assert done.result["attempt"] == 1


async def test_enqueue_of_an_unknown_type_or_bad_field_raises(database_url: str) -> None:
    app = make_app(database_url)
    async with app:
        with pytest.raises(actorq.UnknownTaskType):
            await app.enqueue("nope")
        with pytest.raises(actorq.InvalidInput):
            await app.enqueue("send_email", {}, max_attempts=0)


async def test_a_client_only_app_enqueues_and_a_separate_node_runs_it(database_url: str) -> None:
    worker_app = make_app(database_url)
    client_app = make_app(database_url)
    async with worker_app, client_app:
        await worker_app.start()
        task = await client_app.enqueue("send_email", {"to": "bob@example.com"})
        assert client_app.runtime is None
        done = await worker_app.wait_for(task.id, timeout=10)
        assert done.result == {"sent_to": "bob@example.com"}


async def test_replay_of_a_mixed_workload_equals_the_live_projection(database_url: str) -> None:
    app = make_app(database_url)

    @app.task("boom", max_attempts=2, retry=actorq.RetryPolicy(actorq.Backoff.FIXED, base=0.01))
    async def boom(payload: Any) -> None:
        raise RuntimeError("boom")

    async with app:
        runtime = await app.start()
        ids = [
            t.id
            for t in await app.enqueue_many(
                [{"type": "send_email", "payload": {"to": f"u{i}"}} for i in range(30)]
                + [{"type": "boom"} for _ in range(5)]
                + [{"type": "send_email", "payload": {"to": "x"}, "delay": 60}]
            )
        ]
        for tid in ids[:-1]:
            await app.wait_for(tid, timeout=10)
        await runtime.cancel(ids[-1])
        report = await audit.verify_projection(runtime.journal)
        assert report.matches, report
        assert report.tasks == 36
        assert report.events >= 36 * 2


async def test_a_stop_past_the_grace_period_releases_running_tasks_without_errors(
    database_url: str, gates: Gates, caplog: pytest.LogCaptureFixture
) -> None:
    node = Runtime(node_config(database_url, node="stopper", shutdown_grace=0.2),
                   make_registry(gates))  # fmt: skip
    await node.start()
    tasks = await node.submit([NewTask("gate", {"gate": f"g{i}"}) for i in range(3)])
    for i in range(3):
        await gates.wait_started(f"g{i}")
    with caplog.at_level(logging.WARNING, logger="actorq"):
        await node.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

    journal = journal_from_url(database_url)
    await journal.open()
    try:
        for task in tasks:
            after = await journal.get(task.id)
            assert (after.state, after.attempt) == (TaskState.QUEUED, 0)
            kinds = [e.kind for e in await journal.history(task.id)]
            assert kinds == [EventKind.SUBMITTED, EventKind.CLAIMED, EventKind.STARTED,
                             EventKind.RELEASED]  # fmt: skip
    finally:
        await journal.close()


async def test_a_handler_error_with_a_nul_in_it_is_stored_and_the_task_ends(
    database_url: str, gates: Gates
) -> None:
    """PostgreSQL keeps no NUL in text: an error message holding one must not make the
    outcome unstorable (the task would run again at every lease expiry)."""
    node = Runtime(node_config(database_url), make_registry(gates))
    await node.start()
    try:
        (task,) = await node.submit([NewTask("fail_fast", payload="bad\x00byte", max_attempts=1)])
        done = await node.wait_for(task.id, timeout=10)
        assert done.state is TaskState.DEAD
        assert done.error == "ValueError: bad\ufffdbyte"
        assert done.attempt == 1
    finally:
        await node.stop()
