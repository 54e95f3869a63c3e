"""The OpenAPI document at ``/openapi.json`` tells the truth about the API.

It is a valid OpenAPI 3.1 document; it lists exactly the routes the app registers; the
answers of a running node (successes and errors alike) match the schemas it gives for their
status; and its request schema accepts the submissions the node accepts and refuses the ones
the node refuses.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from nodes import FAST_RETRY, Gates, make_registry, node_config
from openapi_spec_validator import validate as validate_spec
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from actorq.http.app import make_app
from actorq.retry import policy_json
from actorq.runtime import Runtime

DOCUMENT = Path(__file__).parent.parent / "actorq" / "http" / "static" / "openapi.json"
SPEC = json.loads(DOCUMENT.read_text())
SPEC_URI = "urn:actorq:openapi"
SCHEMAS = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(SPEC))
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
TASKS = "/api/v1/tasks"
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in ("", *parts))


def _deref(node: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A ``$ref`` inside the document, followed: the object and where it lives."""
    ref = node.get("$ref")
    if ref is None:
        return node, ()
    parts = tuple(ref.removeprefix("#/").split("/"))
    target: Any = SPEC
    for part in parts:
        target = target[part]
    return target, parts


def validator_at(*parts: str) -> jsonschema.Draft202012Validator:
    """A validator for the schema at ``parts`` in the document, its ``$ref``s resolved within
    the document, and formats (date-time) checked."""
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    assert "date-time" in checker.checkers, "date-time would go unchecked"
    schema = {"$ref": f"{SPEC_URI}#{_pointer(*parts)}"}
    return jsonschema.Draft202012Validator(schema, registry=SCHEMAS, format_checker=checker)


def response_schema(route: str, method: str, status: int, content_type: str) -> tuple[str, ...]:
    """Where the document keeps the schema of this answer; fails if it documents none."""
    operation = SPEC["paths"][route][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {route} answered {status}, not documented"
    response, at = _deref(responses[str(status)])
    if not at:
        at = ("paths", route, method.lower(), "responses", str(status))
    content = response.get("content", {})
    assert content_type in content, f"{method} {route} {status}: {content_type} not documented"
    return (*at, "content", content_type, "schema")


async def check(resp: ClientResponse, route: str, status: int, code: str | None = None) -> Any:
    """Assert the status (and error code), validate the JSON body against the document for
    that status, and return the body."""
    body = await resp.json()
    assert resp.status == status, body
    where = response_schema(route, resp.method, resp.status, resp.content_type)
    validator_at(*where).validate(body)
    if code is not None:
        assert body["error"]["code"] == code
    return body


# -- the document itself --------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    assert SPEC["openapi"].startswith("3.1.")
    validate_spec(SPEC)


def test_document_lists_exactly_the_routes_the_app_registers(tmp_path: Path) -> None:
    """Both ways: a route the app serves but the document leaves out fails, and so does a
    documented operation no route serves. aiohttp answers HEAD for every GET route; the
    document leaves those implied."""
    runtime = Runtime(node_config(f"sqlite:///{tmp_path}/unused.db"), make_registry(Gates()))
    app = make_app(runtime)  # not started: only its routes are read
    registered = {(r.resource.canonical, r.method.lower()) for r in app.router.routes()}
    heads = {(path, m) for path, m in registered if m == "head"}
    assert all((path, "get") in registered for path, _ in heads), "a HEAD without its GET"
    served = registered - heads
    documented = {
        (path, method)
        for path, item in SPEC["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert sorted(served - documented) == [], "served but not documented"
    assert sorted(documented - served) == [], "documented but not served"


def test_every_operation_documents_a_success_and_errors_use_the_error_shape() -> None:
    error_ref = "#/components/schemas/Error"
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            statuses = set(operation["responses"])
            # A WebSocket's success is its upgrade: 101 Switching Protocols.
            success = ("2", "101")
            assert any(s.startswith(success) for s in statuses), f"{method} {path}: no success"
            for status, response in operation["responses"].items():
                body, _ = _deref(response)
                if status.startswith(("4", "5")):
                    schema = body["content"]["application/json"]["schema"]
                    refs = [schema.get("$ref")] + [s.get("$ref") for s in schema.get("oneOf", [])]
                    assert error_ref in refs, f"{method} {path} {status}: not the error shape"


# -- requests -------------------------------------------------------------------------------

GOOD_SUBMISSIONS: list[Any] = [
    {"type": "echo"},
    {"type": "echo", "payload": {"msg": "hi"}, "queue": "mail", "priority": -2,
     "max_attempts": 7, "timeout": 2.5, "delay": 30, "metadata": {"who": "test"},
     "idempotency_key": "good-1"},
    {"type": "echo", "scheduled_at": "2030-01-01T00:00:00Z"},
    {"type": "echo", "scheduled_at": 1893456000},
    [{"type": "echo", "payload": 1}, {"type": "sync_add", "payload": {"a": 1, "b": 2}}],
    {"type": "echo", "priority": 5.0, "max_attempts": 271.0},
    {"type": "echo", "queue": None, "priority": None, "delay": None,
     "scheduled_at": "2030-01-01T00:00:00Z"},
    {"type": "echo", "priority": -2147483648, "timeout": 31536000, "delay": 315360000},
]  # fmt: skip

BAD_SUBMISSIONS: list[Any] = [
    {"payload": 1},
    {"type": ""},
    {"type": "echo", "priority": "high"},
    {"type": "echo", "priority": 1.5},
    {"type": "echo", "max_attempts": 0},
    {"type": "echo", "max_attempts": 1001},
    {"type": "echo", "timeout": 0},
    {"type": "echo", "delay": -1},
    {"type": "echo", "delay": 1, "scheduled_at": "2030-01-01T00:00:00Z"},
    {"type": "echo", "scheduled_at": "tomorrow"},
    {"type": "echo", "metadata": [1]},
    {"type": "echo", "queue": ""},
    {"type": "echo", "idempotency_key": "k" * 201},
    {"type": "echo", "colour": "red"},
    "echo",
    [],
    [{"type": "echo"}, {"type": "echo", "priority": "high"}],
    {"type": "echo", "priority": 2**63},
    {"type": "echo", "priority": 2147483648},
    {"type": "echo", "timeout": 31536001},
    {"type": "echo", "delay": 315360001},
    {"type": "echo", "queue": "a\u0000b"},
    {"type": "echo", "idempotency_key": "\u0000"},
]


def submission_validator() -> jsonschema.Draft202012Validator:
    at = ("paths", TASKS, "post", "requestBody", "content", "application/json", "schema")
    return validator_at(*at)


@pytest.mark.parametrize("body", GOOD_SUBMISSIONS)
async def test_request_schema_accepts_what_the_node_accepts(client: TestClient, body: Any) -> None:
    submission_validator().validate(body)
    await check(await client.post(TASKS, json=body), TASKS, 201)


@pytest.mark.parametrize("body", BAD_SUBMISSIONS)
async def test_request_schema_refuses_what_the_node_refuses(client: TestClient, body: Any) -> None:
    assert not submission_validator().is_valid(body)
    await check(await client.post(TASKS, json=body), TASKS, 400, "invalid_input")


# -- answers of a running node --------------------------------------------------------------


async def test_task_answers_match_the_document(node: Runtime, client: TestClient) -> None:
    one = await check(await client.post(TASKS, json={"type": "echo", "payload": [1]}), TASKS, 201)
    batch = await check(
        await client.post(TASKS, json=[{"type": "echo", "delay": 60}, {"type": "fail_fast"}]),
        TASKS,
        201,
    )
    assert len(batch["tasks"]) == 2
    await node.wait_for(one["id"], timeout=15)
    await node.wait_for(batch["tasks"][1]["id"], timeout=15)

    task_route, history_route = f"{TASKS}/{{id}}", f"{TASKS}/{{id}}/history"
    retry_route = f"{TASKS}/{{id}}/retry"
    shown = await check(await client.get(f"{TASKS}/{one['id']}"), task_route, 200)
    assert shown["state"] == "succeeded"
    assert shown["result"] == [1]
    dead = await check(await client.get(f"{TASKS}/{batch['tasks'][1]['id']}"), task_route, 200)
    assert dead["state"] == "dead"
    assert dead["error"]
    history = await check(
        await client.get(f"{TASKS}/{batch['tasks'][1]['id']}/history"), history_route, 200
    )
    assert [e["kind"] for e in history["events"]][-1] == "dead_lettered"
    page = await check(await client.get(TASKS, params={"limit": "2"}), TASKS, 200)
    assert len(page["tasks"]) == 2
    assert page["next_cursor"] is not None
    last = await check(
        await client.get(TASKS, params={"cursor": page["next_cursor"], "type": "echo"}), TASKS, 200
    )
    assert last["next_cursor"] is None

    delayed = batch["tasks"][0]["id"]
    await check(await client.post(f"{TASKS}/{delayed}/retry"), retry_route, 409,
                "invalid_transition")  # fmt: skip
    cancelled = await check(await client.delete(f"{TASKS}/{delayed}"), task_route, 200)
    assert cancelled["state"] == "cancelled"
    await check(await client.delete(f"{TASKS}/{delayed}"), task_route, 409, "invalid_transition")
    retried = await check(await client.post(f"{TASKS}/{delayed}/retry"), retry_route, 200)
    assert retried["state"] == "scheduled", "a retry keeps a schedule that still lies ahead"


async def test_error_answers_match_the_document(node: Runtime, client: TestClient) -> None:
    task_route, history_route = f"{TASKS}/{{id}}", f"{TASKS}/{{id}}/history"
    await check(await client.get(f"{TASKS}/{UNKNOWN_ID}"), task_route, 404, "task_not_found")
    await check(await client.get(f"{TASKS}/{UNKNOWN_ID}/history"), history_route, 404,
                "task_not_found")  # fmt: skip
    await check(await client.delete(f"{TASKS}/{UNKNOWN_ID}"), task_route, 404, "task_not_found")
    await check(await client.post(f"{TASKS}/{UNKNOWN_ID}/retry"), f"{TASKS}/{{id}}/retry", 404,
                "task_not_found")  # fmt: skip
    for params in ({"state": "bogus"}, {"limit": "0"}, {"limit": "x"}, {"cursor": "nope"}):
        await check(await client.get(TASKS, params=params), TASKS, 400, "invalid_input")

    headers = {"Content-Type": "application/json"}
    await check(await client.post(TASKS, data=b"{not json", headers=headers), TASKS, 400,
                "invalid_json")  # fmt: skip
    await check(await client.post(TASKS, json={"type": "no_such_type"}), TASKS, 422,
                "unknown_task_type")  # fmt: skip
    await check(await client.post(TASKS, json={"type": "echo", "delay": 60,
                                               "idempotency_key": "dup"}), TASKS, 201)  # fmt: skip
    await check(await client.post(TASKS, json={"type": "echo", "idempotency_key": "dup"}), TASKS,
                409, "duplicate_idempotency_key")  # fmt: skip
    huge = json.dumps({"type": "echo", "payload": "x" * (node.config.max_body_bytes + 10)})
    await check(await client.post(TASKS, data=io.BytesIO(huge.encode())), TASKS, 413,
                "payload_too_large")  # fmt: skip


async def test_node_answers_match_the_document(node: Runtime, client: TestClient) -> None:
    body = await check(await client.post(TASKS, json={"type": "echo", "queue": "q1"}), TASKS, 201)
    await node.wait_for(body["id"], timeout=15)

    stats = await check(await client.get("/api/v1/stats"), "/api/v1/stats", 200)
    assert stats["node"] == "test-node"
    if stats["scope"] == "node":  # a cluster's counts follow the shared journal a little later
        assert stats["queues"]["q1"]["succeeded"] == 1
        assert stats["pickup_seconds"]["p50"] is not None
    await check(await client.get("/health"), "/health", 200)
    await check(await client.get("/ready"), "/ready", 200)
    served = await check(await client.get("/openapi.json"), "/openapi.json", 200)
    assert served == SPEC

    metrics = await client.get("/metrics")
    assert metrics.status == 200
    response_schema("/metrics", "GET", 200, metrics.content_type)
    page = await client.get("/")
    assert page.status == 200
    response_schema("/", "GET", 200, page.content_type)
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for name in ("app.js", "style.css"):
        asset = await client.get(f"/static/{name}")
        assert asset.status == 200
        response_schema("/static/{name}", "GET", 200, asset.content_type)
        assert name in await page.text()
    await check(await client.get("/static/openapi.json"), "/static/{name}", 404, "not_found")


async def test_types_lists_every_registered_type_with_its_defaults(
    node: Runtime, client: TestClient
) -> None:
    body = await check(await client.get("/api/v1/types"), "/api/v1/types", 200)
    assert [t["name"] for t in body["types"]] == node.registry.names()
    by_name = {t["name"]: t for t in body["types"]}
    assert by_name["flaky_fast"]["max_attempts"] == 5
    assert by_name["gate"]["max_attempts"] == 1
    assert by_name["flaky_fast"]["retry"] == policy_json(FAST_RETRY)
    assert by_name["echo"] == {
        "name": "echo", "queue": "default", "priority": 0, "max_attempts": 3, "timeout": None,
        "retry": None, "nodes": [node.config.node],
    }  # fmt: skip


async def test_live_feed_items_match_the_documented_schema(client: TestClient) -> None:
    resp = await client.get("/api/v1/events")
    assert resp.status == 200
    response_schema("/api/v1/events", "GET", 200, resp.content_type)
    body = await check(await client.post(TASKS, json={"type": "echo"}), TASKS, 201)
    live = validator_at("components", "schemas", "LiveEvent")
    kinds: list[str] = []
    event_name = None
    async with asyncio.timeout(10):
        while "succeeded" not in kinds:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                event_name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                item = json.loads(line.removeprefix("data: "))
                live.validate(item)
                assert item["kind"] == event_name
                if item["task_id"] == body["id"]:
                    kinds.append(item["kind"])
    resp.close()
    assert kinds == ["submitted", "claimed", "succeeded"]
    validator_at("components", "schemas", "Lagged").validate({"kind": "lagged"})


async def test_queue_answers_match_the_document(node: Runtime, client: TestClient) -> None:
    queues, one = "/api/v1/queues", "/api/v1/queues/{name}"
    await check(await client.post(TASKS, json={"type": "echo", "queue": "mail"}), TASKS, 201)
    listed = await check(await client.get(queues), queues, 200)
    assert [q["name"] for q in listed["queues"]] == ["mail"]
    settings = {"concurrency": 2, "rate_limit": {"limit": 5, "period": 1.5}, "max_depth": 1,
                "retention": 60}  # fmt: skip
    validator_at("components", "schemas", "QueueSettings").validate(settings)
    await check(await client.patch(f"{queues}/mail", json=settings), one, 200)
    await check(await client.get(f"{queues}/mail"), one, 200)
    await check(await client.post(f"{queues}/mail/pause"), f"{one}/pause", 200)
    await check(await client.post(f"{queues}/mail/resume"), f"{one}/resume", 200)
    await check(await client.post(f"{queues}/mail/purge", json={"states": ["queued"]}),
                f"{one}/purge", 200)  # fmt: skip
    await check(await client.get(f"{queues}/nowhere"), one, 404, "queue_not_found")
    await check(await client.patch(f"{queues}/mail", json={"concurrency": 0}), one, 400,
                "invalid_input")  # fmt: skip
    await check(await client.post(f"{queues}/mail/purge", data=b"null"), f"{one}/purge", 400,
                "invalid_input")  # fmt: skip
    await client.post(f"{queues}/mail/pause")
    await check(await client.post(TASKS, json={"type": "echo", "queue": "mail"}), TASKS, 201)
    full = await client.post(TASKS, json={"type": "echo", "queue": "mail"})
    body = await check(full, TASKS, 503, "queue_full")
    assert (body["error"]["max_depth"], full.headers["Retry-After"]) == (1, "1")


async def test_journal_head_answers_match_the_document(node: Runtime, client: TestClient) -> None:
    body = await check(await client.post(TASKS, json={"type": "echo"}), TASKS, 201)
    await node.wait_for(body["id"], timeout=15)
    head = await check(await client.get("/api/v1/journal/head"), "/api/v1/journal/head", 200)
    assert head["journal_seq"] >= 1
    assert head["verification"] is None
