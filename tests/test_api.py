"""The REST API end to end on a running node, on both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from nodes import Gates

from actorq.runtime import Runtime

TASKS = "/api/v1/tasks"


async def post(client: TestClient, body: Any, status: int = 201) -> Any:
    resp = await client.post(TASKS, json=body)
    data = await resp.json()
    assert resp.status == status, data
    return data


async def finished(node: Runtime, task_id: str) -> dict[str, Any]:
    from actorq.render import task_json

    return task_json(await node.wait_for(task_id, timeout=15))


async def test_submit_returns_the_durable_task_and_it_succeeds(
    node: Runtime, client: TestClient
) -> None:
    body = await post(client, {"type": "echo", "payload": {"msg": "hi"}, "priority": 5})
    assert body["state"] == "queued"
    assert body["attempt"] == 0
    assert body["max_attempts"] == 3
    assert body["priority"] == 5
    assert body["created_at"].endswith("Z")
    # durable before the answer: the journal already holds the submitted event
    history = await node.history(body["id"])
    assert [e.kind.value for e in history][:1] == ["submitted"]

    done = await finished(node, body["id"])
    assert done["state"] == "succeeded"
    assert done["result"] == {"msg": "hi"}
    resp = await client.get(f"{TASKS}/{body['id']}")
    shown = await resp.json()
    assert shown["state"] == "succeeded"
    assert shown["result"] == {"msg": "hi"}
    assert shown["started_at"] is not None
    assert shown["finished_at"] is not None


async def test_history_lists_every_transition_with_time_node_and_worker(
    node: Runtime, client: TestClient
) -> None:
    body = await post(client, {"type": "echo", "payload": 1})
    await finished(node, body["id"])
    resp = await client.get(f"{TASKS}/{body['id']}/history")
    events = (await resp.json())["events"]
    # A handler that ends within the start window: its outcome carries its start.
    assert [e["kind"] for e in events] == ["submitted", "claimed", "succeeded"]
    assert all(e["node"] == "test-node" and e["at"] for e in events)
    assert events[1]["worker"].startswith("test-node/w")
    assert events[2]["worker"].startswith("test-node/w")
    assert events[2]["data"]["started_at"].endswith("Z")
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


async def test_batch_submit_creates_all_tasks(node: Runtime, client: TestClient) -> None:
    body = await post(client, [{"type": "echo", "payload": i} for i in range(25)])
    assert len(body["tasks"]) == 25
    results = [await finished(node, t["id"]) for t in body["tasks"]]
    assert [r["result"] for r in results] == list(range(25))


async def test_higher_priority_runs_first_and_fifo_within_a_priority(
    single_worker_node: Runtime, gates: Gates, client_single: TestClient
) -> None:
    node, client = single_worker_node, client_single
    blocker = await post(client, {"type": "gate", "payload": {"gate": "g"}})
    await gates.wait_started("g")
    plan = [(0, "a"), (5, "b"), (0, "c"), (9, "d"), (5, "e")]
    created = await post(
        client, [{"type": "record", "payload": p, "priority": pr} for pr, p in plan]
    )
    gates.open("g")
    for t in created["tasks"]:
        await finished(node, t["id"])
    await finished(node, blocker["id"])
    assert gates.order == ["d", "b", "e", "a", "c"]


async def test_failing_task_is_retried_then_succeeds_with_each_error_in_history(
    node: Runtime, client: TestClient
) -> None:
    body = await post(client, {"type": "flaky_fast", "payload": {"fail_times": 2}})
    done = await finished(node, body["id"])
    assert done["state"] == "succeeded"
    assert done["attempt"] == 3
    assert done["result"] == 3
    kinds = [e.kind.value for e in await node.history(body["id"])]
    assert kinds.count("failed") == 2
    assert kinds.count("enqueued") == 2
    failures = [e for e in await node.history(body["id"]) if e.kind.value == "failed"]
    assert "planned failure 1" in failures[0].data["error"]
    assert "planned failure 2" in failures[1].data["error"]
    assert all(f.data["retry_at"] >= f.at for f in failures)


async def test_task_that_always_fails_goes_dead_after_max_attempts(
    node: Runtime, client: TestClient
) -> None:
    body = await post(client, {"type": "fail_fast", "payload": "nope", "max_attempts": 3})
    done = await finished(node, body["id"])
    assert done["state"] == "dead"
    assert done["attempt"] == 3
    assert "ValueError: nope" in done["error"]
    kinds = [e.kind.value for e in await node.history(body["id"])]
    assert kinds.count("claimed") == 3
    assert kinds.count("failed") == 2
    assert kinds[-1] == "dead_lettered"


async def test_handler_past_its_timeout_is_cancelled_and_counts_as_failed(
    node: Runtime, client: TestClient
) -> None:
    body = await post(
        client, {"type": "slow", "payload": {"seconds": 30}, "timeout": 0.2, "max_attempts": 2}
    )
    done = await finished(node, body["id"])
    assert done["state"] == "dead"
    assert "timed out" in done["error"]
    events = await node.history(body["id"])
    assert [e.kind.value for e in events].count("timed_out") == 1
    assert events[-1].kind.value == "dead_lettered"
    assert events[-1].data["reason"] == "timed_out"


async def test_delay_and_scheduled_at_run_the_task_later(node: Runtime, client: TestClient) -> None:
    delayed = await post(client, {"type": "echo", "payload": "later", "delay": 0.3})
    assert delayed["state"] == "scheduled"
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3)
    at = await post(client, {"type": "echo", "payload": "at", "scheduled_at": when.isoformat()})
    assert at["state"] == "scheduled"
    for body in (delayed, at):
        done = await finished(node, body["id"])
        assert done["state"] == "succeeded"
        assert done["started_at"] >= body["scheduled_at"]


async def test_cancel_a_queued_task_and_conflict_on_a_finished_one(
    node: Runtime, client: TestClient
) -> None:
    body = await post(client, {"type": "echo", "delay": 60})
    resp = await client.delete(f"{TASKS}/{body['id']}")
    assert resp.status == 200
    assert (await resp.json())["state"] == "cancelled"
    resp = await client.delete(f"{TASKS}/{body['id']}")
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "invalid_transition"
    resp = await client.delete(f"{TASKS}/00000000-0000-0000-0000-000000000000")
    assert resp.status == 404


async def test_cancel_of_a_running_task_reaches_its_handler(
    node: Runtime, gates: Gates, client: TestClient
) -> None:
    body = await post(client, {"type": "gate", "payload": {"gate": "c"}})
    await gates.wait_started("c")
    resp = await client.delete(f"{TASKS}/{body['id']}")
    assert resp.status == 200
    await gates.wait_cancelled("c")
    task = await node.get(body["id"])
    assert task.state.value == "cancelled"


async def test_manual_retry_of_a_dead_task_runs_it_again(node: Runtime, client: TestClient) -> None:
    body = await post(client, {"type": "fail_fast", "max_attempts": 1})
    assert (await finished(node, body["id"]))["state"] == "dead"
    resp = await client.post(f"{TASKS}/{body['id']}/retry")
    assert resp.status == 200
    assert (await resp.json())["state"] == "queued"
    done = await finished(node, body["id"])
    assert done["state"] == "dead"
    kinds = [e.kind.value for e in await node.history(body["id"])]
    assert kinds.count("retried") == 1
    assert kinds.count("claimed") == 2


async def test_list_filters_by_state_and_queue_and_paginates(
    node: Runtime, client: TestClient
) -> None:
    await post(client, [{"type": "echo", "queue": "mail", "delay": 60} for _ in range(7)])
    await post(client, [{"type": "echo", "queue": "other", "delay": 60} for _ in range(3)])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"state": "scheduled", "queue": "mail", "limit": "3"}
        if cursor:
            params["cursor"] = cursor
        resp = await client.get(TASKS, params=params)
        page = await resp.json()
        assert resp.status == 200
        seen += [t["id"] for t in page["tasks"]]
        assert all(t["queue"] == "mail" and t["state"] == "scheduled" for t in page["tasks"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7
    assert len(set(seen)) == 7
    resp = await client.get(TASKS, params={"state": "bogus"})
    assert resp.status == 400


async def test_duplicate_idempotency_key_is_a_conflict(node: Runtime, client: TestClient) -> None:
    first = await post(client, {"type": "echo", "delay": 60, "idempotency_key": "k-1"})
    resp = await client.post(TASKS, json={"type": "echo", "idempotency_key": "k-1"})
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "duplicate_idempotency_key"
    assert (await node.get(first["id"])).state.value == "scheduled"


async def test_stats_health_ready_and_metrics(node: Runtime, client: TestClient) -> None:
    async with node.live_events() as feed:
        body = await post(client, {"type": "echo"})
        async with asyncio.timeout(10):  # stats fold an event before the feed hands it out
            while (item := await feed.get())["kind"] != "succeeded":
                assert item["task_id"] == body["id"]
    stats = await (await client.get("/api/v1/stats")).json()
    assert stats["tasks"]["succeeded"] == 1
    assert sum(stats["tasks"].values()) == 1
    assert stats["events"] == {"submitted": 1, "claimed": 1, "succeeded": 1}
    assert stats["queues"]["default"]["succeeded"] == 1
    assert (await client.get("/health")).status == 200
    ready = await client.get("/ready")
    assert ready.status == 200
    assert (await ready.json())["journal_seq"] >= 3
    metrics = await (await client.get("/metrics")).text()
    assert 'actorq_tasks{queue="default",state="succeeded"}' in metrics
    assert "actorq_pickup_seconds_bucket" in metrics


async def test_event_stream_delivers_committed_events(node: Runtime, client: TestClient) -> None:
    resp = await client.get("/api/v1/events")
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    body = await post(client, {"type": "echo"})
    kinds: list[str] = []
    async with asyncio.timeout(10):
        while "succeeded" not in kinds:
            line = (await resp.content.readline()).decode()
            if line.startswith("data: "):
                item = json.loads(line[6:])
                if item["task_id"] == body["id"]:
                    kinds.append(item["kind"])
    assert kinds == ["submitted", "claimed", "succeeded"]
    resp.close()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_input"),
        (b'{"payload": 1}', 400, "invalid_input"),
        (b'{"type": "no_such_type"}', 422, "unknown_task_type"),
        (b'{"type": "echo", "priority": "high"}', 400, "invalid_input"),
        (b'{"type": "echo", "max_attempts": 0}', 400, "invalid_input"),
        (b'{"type": "echo", "timeout": -1}', 400, "invalid_input"),
        (
            b'{"type": "echo", "delay": 1, "scheduled_at": "2030-01-01T00:00:00Z"}',
            400,
            "invalid_input",
        ),
        (b'{"type": "echo", "scheduled_at": "tomorrow"}', 400, "invalid_input"),
        (b'{"type": "echo", "metadata": [1]}', 400, "invalid_input"),
        (b'{"type": "echo", "colour": "red"}', 400, "invalid_input"),
        (b'"echo"', 400, "invalid_input"),
        (b"[]", 400, "invalid_input"),
        (b'[{"type": "echo"}, {"type": "nope"}]', 422, "unknown_task_type"),
    ],
)
async def test_bad_input_gets_a_clear_error_and_changes_nothing(
    node: Runtime, client: TestClient, body: bytes, status: int, code: str
) -> None:
    before = await node.journal.head()
    resp = await client.post(TASKS, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    error = (await resp.json())["error"]
    assert error["code"] == code
    assert error["message"]
    assert await node.journal.head() == before


async def test_huge_payload_is_refused_with_413(node: Runtime, client: TestClient) -> None:
    before = await node.journal.head()
    huge = {"type": "echo", "payload": "x" * (node.config.max_body_bytes + 10)}
    resp = await client.post(TASKS, data=io.BytesIO(json.dumps(huge).encode()))
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"
    assert await node.journal.head() == before


async def test_unknown_task_id_is_404_everywhere(client: TestClient) -> None:
    for path in (f"{TASKS}/nope", f"{TASKS}/nope/history"):
        resp = await client.get(path)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "task_not_found"
    resp = await client.post(f"{TASKS}/nope/retry")
    assert resp.status == 404


async def test_webhook_example_posts_for_real_and_fails_on_an_error_status(
    node: Runtime, client: TestClient, aiohttp_server: Any
) -> None:
    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        status = 500 if request.query.get("fail") else 200
        return web.json_response({"ok": status == 200}, status=status)

    target = web.Application()
    target.router.add_post("/hook", hook)
    server = await aiohttp_server(target)
    url = str(server.make_url("/hook"))
    ok = await post(client, {"type": "webhook", "payload": {"url": url, "body": {"n": 1}}})
    done = await finished(node, ok["id"])
    assert done["state"] == "succeeded"
    assert done["result"]["status"] == 200
    assert received == [{"n": 1}]

    bad = await post(client, {"type": "webhook", "max_attempts": 1,
                              "payload": {"url": url + "?fail=1", "body": {"n": 2}}})  # fmt: skip
    done = await finished(node, bad["id"])
    assert done["state"] == "dead"
    assert "answered 500" in done["error"]
    assert received == [{"n": 1}, {"n": 2}]
