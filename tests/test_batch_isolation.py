"""One bad operation in a shared commit fails alone: the innocent ones batched with it commit,
run, and get their own answers, on both backends (a real node, real databases)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from actorq.errors import InvalidInput
from actorq.journal.base import Journal, Submit
from actorq.model import NewTask, TaskState
from actorq.runtime import Runtime

# What the database cannot store, though it passed the model: (name, task, backends).
BIG_PRIORITY = NewTask(type="echo", priority=2**63)
NUL_IN_QUEUE = NewTask(type="echo", queue="a\x00b")
UNSTORABLE = [
    pytest.param(BIG_PRIORITY, id="priority-2**63"),
    pytest.param(NUL_IN_QUEUE, id="nul-in-queue"),
]
DRIVER_WORDS = ("9223372036854775808", "int64", "sqlite", "Python int", "UTF8", "0x00")


def skip_if_storable(database_url: str, bad: NewTask) -> None:
    if bad is NUL_IN_QUEUE and database_url.startswith("sqlite"):
        pytest.skip("SQLite stores a NUL in text; only PostgreSQL refuses it")


def assert_no_driver_words(message: str) -> None:
    assert not any(word in message for word in DRIVER_WORDS), message


@pytest.mark.parametrize("bad", UNSTORABLE)
async def test_an_unstorable_submit_fails_alone_and_the_twenty_beside_it_run(
    database_url: str, node: Runtime, bad: NewTask, caplog: pytest.LogCaptureFixture
) -> None:
    skip_if_storable(database_url, bad)
    valid = [NewTask(type="echo", payload={"n": i}) for i in range(20)]
    # Submitted at once, all 21 reach the writer's mailbox before it flushes: one batch.
    with caplog.at_level(logging.WARNING, "actorq"):
        results = await asyncio.gather(
            *(node.submit([t]) for t in valid[:10]),
            node.submit([bad]),
            *(node.submit([t]) for t in valid[10:]),
            return_exceptions=True,
        )
    refused = results.pop(10)
    assert isinstance(refused, InvalidInput), refused
    assert_no_driver_words(str(refused))
    assert all(isinstance(r, list) for r in results), results
    assert any("in halves" in r.message for r in caplog.records), "they shared a batch"
    done = await asyncio.gather(*(node.wait_for(t.id, timeout=15) for t in valid))
    assert [t.state for t in done] == [TaskState.SUCCEEDED] * 20
    assert [t.result for t in done] == [{"n": i} for i in range(20)]
    with pytest.raises(Exception, match="no task"):
        await node.get(bad.id)


async def test_twenty_concurrent_posts_succeed_beside_one_with_a_huge_priority(
    node: Runtime, client: TestClient
) -> None:
    async def post(body: dict[str, Any]) -> tuple[int, Any]:
        resp = await client.post("/api/v1/tasks", json=body)
        return resp.status, await resp.json()

    answers = await asyncio.gather(
        *(post({"type": "echo", "payload": i}) for i in range(10)),
        post({"type": "echo", "priority": 2**63}),
        *(post({"type": "echo", "payload": i}) for i in range(10, 20)),
    )
    status, body = answers.pop(10)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_input"
    assert_no_driver_words(body["error"]["message"])
    assert [s for s, _ in answers] == [201] * 20, answers
    for _, task in answers:
        assert (await node.wait_for(task["id"], timeout=15)).state is TaskState.SUCCEEDED


@pytest.mark.parametrize("bad", UNSTORABLE)
async def test_the_journal_maps_unstorable_data_to_invalid_input_and_stays_usable(
    database_url: str, journal: Journal, bad: NewTask
) -> None:
    skip_if_storable(database_url, bad)
    with pytest.raises(InvalidInput) as refused:
        await journal.run([Submit([bad], 1.0, "n")])
    assert_no_driver_words(str(refused.value))
    valid = NewTask(type="echo")
    [outcome] = await journal.run([Submit([valid], 2.0, "n")])
    assert outcome.error is None
    assert (await journal.get(valid.id)).state is TaskState.QUEUED
    assert [e.task_id for e in [e async for e in journal.events()]] == [valid.id]


async def test_a_nul_in_an_idempotency_key_is_invalid_input_on_postgres(
    postgres_url: str,
) -> None:
    from actorq.journal import journal_from_url

    journal = journal_from_url(postgres_url)
    await journal.open()
    try:
        with pytest.raises(InvalidInput):
            await journal.run([Submit([NewTask(type="echo", idempotency_key="k\x00")], 1.0, "n")])
    finally:
        await journal.close()
