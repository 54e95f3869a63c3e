"""Dead letters, retention, result size and the per-client rate limit through the REST API of
a running node, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config

from actorq.http.app import make_app
from actorq.http.rate_limit import RateLimiter
from actorq.model import EventKind, TaskState
from actorq.runtime import Runtime

TASKS = "/api/v1/tasks"
DEAD = "/api/v1/dead-letters"


@pytest.fixture
async def start_node(
    database_url: str, gates: Gates, aiohttp_client: Any
) -> AsyncIterator[Callable[..., Any]]:
    """Starts a node with settings of the test's own and gives a test client of its API."""
    started: list[Runtime] = []

    async def start(**overrides: Any) -> tuple[Runtime, TestClient]:
        runtime = Runtime(node_config(database_url, **overrides), make_registry(gates))
        await runtime.start()
        started.append(runtime)
        client: TestClient = await aiohttp_client(make_app(runtime))
        return runtime, client

    yield start
    for runtime in started:
        await runtime.stop()


async def submit(client: TestClient, body: Any) -> dict[str, Any]:
    resp = await client.post(TASKS, json=body)
    data: dict[str, Any] = await resp.json()
    assert resp.status == 201, data
    return data


async def dead(node: Runtime, client: TestClient, n: int, **fields: Any) -> list[str]:
    """``n`` tasks of type fail_fast that end dead after ``max_attempts`` (default 1)."""
    fields.setdefault("max_attempts", 1)
    ids = []
    for i in range(n):
        task = await submit(client, {"type": "fail_fast", "payload": f"boom {i}", **fields})
        ids.append(task["id"])
    for task_id in ids:
        done = await node.wait_for(task_id, timeout=15)
        assert done.state is TaskState.DEAD
    return ids


async def json_of(resp: Any, status: int) -> Any:
    data = await resp.json()
    assert resp.status == status, data
    return data


async def test_dead_letters_list_their_last_error_and_attempts_filtered_and_paged(
    node: Runtime, client: TestClient
) -> None:
    a = await dead(node, client, 2, queue="a", max_attempts=2)
    b = await dead(node, client, 1, queue="b")
    await submit(client, {"type": "echo", "payload": 1})  # not dead: never listed
    body = await json_of(await client.get(DEAD), 200)
    assert {t["id"] for t in body["dead_letters"]} == {*a, *b}
    assert body["next_cursor"] is None
    first = next(t for t in body["dead_letters"] if t["id"] == a[0])
    assert first["state"] == "dead"
    assert first["attempt"] == 2
    assert first["error"] == "ValueError: boom 0"
    only_b = await json_of(await client.get(DEAD, params={"queue": "b"}), 200)
    assert [t["id"] for t in only_b["dead_letters"]] == b
    assert (await json_of(await client.get(DEAD, params={"type": "echo"}), 200)) == {
        "dead_letters": [], "next_cursor": None,
    }  # fmt: skip
    seen: list[str] = []
    params = {"limit": "1"}
    while True:
        page = await json_of(await client.get(DEAD, params=params), 200)
        seen += [t["id"] for t in page["dead_letters"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert sorted(seen) == sorted([*a, *b])
    assert len(seen) == 3
    bad = await json_of(await client.get(DEAD, params={"limit": "0"}), 400)
    assert bad["error"]["code"] == "invalid_input"


async def test_retry_gives_a_fresh_attempt_budget_and_the_history_says_who(
    node: Runtime, client: TestClient
) -> None:
    ids = await dead(node, client, 2, max_attempts=2)
    answer = await json_of(await client.post(f"{DEAD}/retry", json={"ids": [ids[0]]}), 200)
    assert answer == {"retried": 1}
    again = await node.wait_for(ids[0], timeout=15)  # fails twice more: a fresh budget of 2
    assert again.state is TaskState.DEAD
    assert again.attempt == 2
    history = await node.history(ids[0])
    kinds = [e.kind for e in history]
    assert kinds.count(EventKind.STARTED) + kinds.count(EventKind.FAILED) >= 2
    retried = [e for e in history if e.kind is EventKind.RETRIED]
    assert len(retried) == 1
    assert retried[0].data["by"] == "api:127.0.0.1"
    assert (await node.get(ids[1])).state is TaskState.DEAD  # not selected
    shown = await json_of(await client.get(f"{TASKS}/{ids[0]}/history"), 200)
    assert any(e["kind"] == "retried" and e["data"]["by"] == "api:127.0.0.1"
               for e in shown["events"])  # fmt: skip


async def test_retry_and_purge_by_filter_or_all(node: Runtime, client: TestClient) -> None:
    a = await dead(node, client, 2, queue="a")
    b = await dead(node, client, 1, queue="b")
    resp = await client.post(f"{DEAD}/purge", json={"queue": "a"})
    assert await json_of(resp, 200) == {"purged": 2}
    for task_id in a:
        gone = await json_of(await client.get(f"{TASKS}/{task_id}"), 404)
        assert gone["error"]["code"] == "task_purged"
        events = (await json_of(await client.get(f"{TASKS}/{task_id}/history"), 200))["events"]
        assert events[-1]["kind"] == "purged"
        assert events[-1]["data"]["by"] == "api:127.0.0.1"
    # No body at all: every dead letter.
    assert await json_of(await client.post(f"{DEAD}/retry"), 200) == {"retried": 1}
    assert (await node.wait_for(b[0], timeout=15)).state is TaskState.DEAD
    assert await json_of(await client.post(f"{DEAD}/purge", data=b""), 200) == {"purged": 1}
    assert await json_of(await client.post(f"{DEAD}/purge"), 200) == {"purged": 0}
    metrics = (await (await client.get("/metrics")).text()).splitlines()
    assert 'actorq_tasks_removed_total{reason="purged"} 3.0' in metrics  # this node's own
    # On PostgreSQL the gauges follow the shared journal and are re-read from the projection
    # at most once a second: wait for that read.
    async with asyncio.timeout(10):
        while 'actorq_dead_letters{queue="b"} 0.0' not in metrics:
            await asyncio.sleep(0.1)
            metrics = (await (await client.get("/metrics")).text()).splitlines()
    assert 'actorq_dead_letters{queue="a"} 0.0' in metrics


@pytest.mark.parametrize(
    "body",
    ['{"ids": "x"}', '{"ids": [1]}', '{"queue": 5}', '{"what": 1}', "[1]", "{nope"],
)
async def test_bad_selections_are_refused_with_a_json_error(
    node: Runtime, client: TestClient, body: str
) -> None:
    (task_id,) = await dead(node, client, 1)
    for action in ("retry", "purge"):
        resp = await client.post(f"{DEAD}/{action}", data=body,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
        error = (await json_of(resp, 400))["error"]
        assert error["code"] in ("invalid_input", "invalid_json")
        assert error["message"]
    assert (await node.get(task_id)).state is TaskState.DEAD  # nothing happened


async def test_finished_tasks_expire_after_the_retention_and_answer_404_expired(
    start_node: Callable[..., Any],
) -> None:
    node, client = await start_node(retention=0.3)
    async with node.live_events() as feed:
        task = await submit(client, {"type": "echo", "payload": 1})
        live = await submit(client, {"type": "echo", "payload": 2, "delay": 3600})
        async with asyncio.timeout(15):
            while True:
                item = await feed.get()
                if item.get("kind") == "expired" and item.get("task_id") == task["id"]:
                    break
    error = (await json_of(await client.get(f"{TASKS}/{task['id']}"), 404))["error"]
    assert error["code"] == "task_expired"
    assert task["id"] in error["message"]
    events = (await json_of(await client.get(f"{TASKS}/{task['id']}/history"), 200))["events"]
    assert [e["kind"] for e in events][-2:] == ["succeeded", "expired"]
    assert events[-1]["data"] == {"state": "succeeded", "queue": "default", "retention": 0.3}
    assert (await node.get(live["id"])).state is TaskState.SCHEDULED  # live work stays
    listed = await json_of(await client.get(TASKS), 200)
    assert [t["id"] for t in listed["tasks"]] == [live["id"]]
    from actorq import audit

    assert (await audit.verify_projection(node.journal)).matches
    metrics = (await (await client.get("/metrics")).text()).splitlines()
    assert any(line.startswith('actorq_tasks_removed_total{reason="expired"}') for line in metrics)


async def test_a_result_too_large_dead_letters_at_once_and_is_never_stored(
    start_node: Callable[..., Any],
) -> None:
    node, client = await start_node(max_result_bytes=100)
    big = await submit(client, {"type": "record", "payload": "é" * 60})  # 122 bytes as JSON
    small = await submit(client, {"type": "record", "payload": "x" * 60})
    done = await node.wait_for(big["id"], timeout=15)
    assert done.state is TaskState.DEAD
    assert done.attempt == 1  # max_attempts is 3: no retry would help
    assert done.result is None
    assert done.error is not None
    assert "result too large" in done.error
    assert "ACTORQ_MAX_RESULT_BYTES=100" in done.error
    last = (await node.history(big["id"]))[-1]
    assert last.kind is EventKind.DEAD_LETTERED
    assert last.data["reason"] == "result_too_large"
    assert "result" not in last.data
    assert (await node.wait_for(small["id"], timeout=15)).result == "x" * 60


async def test_a_client_over_the_rate_limit_gets_429_with_retry_after(
    start_node: Callable[..., Any],
) -> None:
    _, client = await start_node(rate_limit="3/m")
    for _ in range(3):
        assert (await client.get(TASKS)).status == 200
    resp = await client.get(TASKS)
    body = await json_of(resp, 429)
    assert body["error"]["code"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 20  # one token every 20 s
    for probe in ("/health", "/ready"):  # never refused
        assert (await client.get(probe)).status == 200


async def test_with_tokens_each_token_has_its_own_bucket(
    start_node: Callable[..., Any],
) -> None:
    """Clients behind one address (a proxy, a NAT) are told apart by their tokens."""
    from test_auth import bearer, make_token

    from actorq.auth import Scope

    node, client = await start_node(rate_limit="2/m")
    alice = await make_token(node, "alice", Scope.READ)
    bob = await make_token(node, "bob", Scope.READ)
    for _ in range(2):
        assert (await client.get(TASKS, headers=bearer(alice))).status == 200
    assert (await client.get(TASKS, headers=bearer(alice))).status == 429
    for _ in range(2):  # same address, another token: a bucket of its own
        assert (await client.get(TASKS, headers=bearer(bob))).status == 200
    assert (await client.get(TASKS, headers=bearer(bob))).status == 429
    # no token at all: the address's bucket, refused by auth (401) rather than the limit
    assert (await client.get(TASKS)).status == 401


def test_the_rate_limiter_refills_and_keeps_a_bounded_number_of_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 1.0, clock=lambda: now[0], max_clients=100)
    limiter.take("a")
    limiter.take("a")
    with pytest.raises(Exception, match="too many requests") as refused:
        limiter.take("a")
    assert refused.value.retry_after == pytest.approx(0.5)  # type: ignore[attr-defined]
    now[0] = 0.5
    limiter.take("a")  # one token back after half a second
    for i in range(10_000):
        limiter.take(f"client-{i}")
    assert len(limiter) == 100  # many clients, bounded memory
    limiter.take("a")  # forgotten: a full bucket again
    limiter.take("a")


async def test_dead_letter_answers_match_the_document(
    start_node: Callable[..., Any],
) -> None:
    from test_openapi import check

    node, client = await start_node(rate_limit="12/m")
    (task_id,) = await dead(node, client, 1)
    await check(await client.get(DEAD), DEAD, 200)
    await check(await client.get(DEAD, params={"cursor": "x"}), DEAD, 400, "invalid_input")
    retry = f"{DEAD}/retry"
    await check(await client.post(retry, json={"ids": [1]}), retry, 400, "invalid_input")
    await check(await client.post(retry, json={"ids": ["nope"]}), retry, 200)
    purge = f"{DEAD}/purge"
    body = await check(await client.post(purge, json={"ids": [task_id]}), purge, 200)
    assert body == {"purged": 1}
    one = "/api/v1/tasks/{id}"
    await check(await client.get(f"{TASKS}/{task_id}"), one, 404, "task_purged")
    await check(await client.get(f"{TASKS}/{task_id}/history"), one + "/history", 200)
    while (resp := await client.get(DEAD)).status != 429:  # 12 a minute: soon refused
        assert resp.status == 200
    await check(resp, DEAD, 429, "rate_limited")


async def expire_second(
    node: Runtime, client: TestClient, first: str, second: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An echo task in queue ``first``, then one in ``second``; returns both once the second
    has expired (the first's fate is the test's to check)."""
    async with node.live_events() as feed:
        one = await submit(client, {"type": "echo", "payload": 1, "queue": first})
        two = await submit(client, {"type": "echo", "payload": 2, "queue": second})
        async with asyncio.timeout(15):
            while True:
                item = await feed.get()
                if item.get("kind") == "expired" and item.get("task_id") == two["id"]:
                    return one, two


async def test_a_queue_with_a_retention_of_its_own_keeps_its_tasks_longer(
    start_node: Callable[..., Any],
) -> None:
    node, client = await start_node(retention=0.5)
    resp = await client.patch("/api/v1/queues/keep", json={"retention": 3600})
    assert resp.status == 200, await resp.text()
    kept, short = await expire_second(node, client, "keep", "default")
    # Both finished together; the default queue's expired after 0.5 s, "keep"'s stays.
    assert (await node.get(kept["id"])).state is TaskState.SUCCEEDED
    events = await node.history(short["id"])
    assert events[-1].data["retention"] == 0.5


async def test_a_queue_period_applies_on_a_node_that_keeps_finished_tasks_for_ever(
    start_node: Callable[..., Any],
) -> None:
    # Retention 0 keeps the node's finished tasks; a queue's own period still expires its own,
    # and promptly: the sweep follows the shortest period, not the node's minute.
    node, client = await start_node(retention=0)
    resp = await client.patch("/api/v1/queues/scratch", json={"retention": 0.3})
    assert resp.status == 200, await resp.text()
    kept, short = await expire_second(node, client, "default", "scratch")
    assert (await node.get(kept["id"])).state is TaskState.SUCCEEDED
    events = await node.history(short["id"])
    assert events[-1].data["retention"] == 0.3
    assert (await node.get(kept["id"])).finished_at is not None
