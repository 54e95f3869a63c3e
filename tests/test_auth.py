"""API tokens and scopes, and who did what, on a running node, on both backends."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config

from actorq.auth import Scope, new_token
from actorq.http.app import make_app
from actorq.http.keys import KEYRING
from actorq.runtime import Runtime

TASKS = "/api/v1/tasks"


async def make_token(node: Runtime, name: str, scope: Scope) -> str:
    token, secret = new_token(name, scope, node.clock(), "test")
    await node.journal.create_token(token)
    return secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def call(
    client: TestClient, method: str, path: str, secret: str | None, status: int, body: Any = None
) -> Any:
    headers = bearer(secret) if secret else {}
    resp = await client.request(method, path, json=body, headers=headers)
    data = await resp.json()
    assert resp.status == status, (method, path, data)
    return data


async def test_without_tokens_the_api_is_open_and_calls_are_anonymous(
    node: Runtime, client: TestClient
) -> None:
    task = await call(client, "POST", TASKS, None, 201, {"type": "echo", "payload": 1})
    await node.wait_for(task["id"], timeout=15)
    history = await call(client, "GET", f"{TASKS}/{task['id']}/history", None, 200)
    actors = {e["kind"]: e["actor"] for e in history["events"]}
    assert actors["submitted"] == "anonymous"
    # what the runtime decided itself names the node
    assert actors["claimed"] == node.config.node
    assert actors["succeeded"] == node.config.node


async def test_each_route_needs_its_scope(node: Runtime, client: TestClient) -> None:
    secrets = {s: await make_token(node, f"t-{s.value}", s) for s in Scope}
    # none, or a wrong token: 401 with a challenge
    resp = await client.get(TASKS)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"]["code"] == "unauthorized"
    resp = await client.get(TASKS, headers=bearer("aq_not-a-token"))
    assert resp.status == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    # open routes stay open; /metrics needs read
    for path in ("/health", "/ready", "/", "/openapi.json"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers=bearer(secrets[Scope.READ]))).status == 200

    submission = {"type": "gate", "payload": {"gate": "g"}}
    read, submit, operate, admin = (secrets[s] for s in Scope)
    await call(client, "GET", TASKS, read, 200)
    forbidden = await call(client, "POST", TASKS, read, 403, submission)
    assert forbidden["error"]["code"] == "forbidden"
    task = await call(client, "POST", TASKS, submit, 201, submission)
    await call(client, "DELETE", f"{TASKS}/{task['id']}", submit, 403)
    await call(client, "POST", "/api/v1/queues/default/pause", submit, 403)
    await call(client, "GET", "/api/v1/tokens", operate, 403)
    await call(client, "DELETE", f"{TASKS}/{task['id']}", operate, 200)
    await call(client, "POST", "/api/v1/queues/default/resume", operate, 200)
    listed = await call(client, "GET", "/api/v1/tokens", admin, 200)
    assert {t["name"] for t in listed["tokens"]} == {f"t-{s.value}" for s in Scope}
    assert all("secret" not in t and "hash" not in t for t in listed["tokens"])
    resp = await client.post(TASKS, json=submission, headers=bearer(read))
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


async def test_events_name_their_token_and_tasks_filter_by_submitter(
    node: Runtime, client: TestClient
) -> None:
    alice = await make_token(node, "alice", Scope.SUBMIT)
    bob = await make_token(node, "bob", Scope.OPERATE)
    mine = await call(client, "POST", TASKS, alice, 201, {"type": "gate", "payload": {"gate": "a"}})
    theirs = await call(client, "POST", TASKS, bob, 201, {"type": "echo", "payload": 2})
    await call(client, "DELETE", f"{TASKS}/{mine['id']}", bob, 200)

    page = await call(client, "GET", f"{TASKS}?by=alice", bob, 200)
    assert [t["id"] for t in page["tasks"]] == [mine["id"]]
    page = await call(client, "GET", f"{TASKS}?by=bob", bob, 200)
    assert [t["id"] for t in page["tasks"]] == [theirs["id"]]
    assert (await call(client, "GET", f"{TASKS}?by=nobody", bob, 200))["tasks"] == []

    history = await call(client, "GET", f"{TASKS}/{mine['id']}/history", bob, 200)
    by_kind = {e["kind"]: e["actor"] for e in history["events"]}
    assert by_kind["submitted"] == "alice"
    assert by_kind["cancelled"] == "bob"


async def test_tokens_made_and_revoked_through_the_api_work_and_stop_at_once(
    node: Runtime, client: TestClient
) -> None:
    admin = await make_token(node, "root", Scope.ADMIN)
    made = await call(client, "POST", "/api/v1/tokens", admin, 201,
                      {"name": "ci", "scope": "submit"})  # fmt: skip
    assert made["secret"].startswith("aq_")
    assert made["created_by"] == "root"
    await call(client, "POST", TASKS, made["secret"], 201, {"type": "echo"})
    again = await call(client, "POST", "/api/v1/tokens", admin, 409, {"name": "ci"})
    assert again["error"]["code"] == "token_exists"
    await call(client, "POST", "/api/v1/tokens", admin, 400, {"name": "a b", "scope": "read"})
    await call(client, "POST", "/api/v1/tokens", admin, 400, {"name": "x", "scope": "god"})
    revoked = await call(client, "DELETE", "/api/v1/tokens/ci", admin, 200)
    assert revoked["revoked_at"] is not None
    await call(client, "POST", TASKS, made["secret"], 401, {"type": "echo"})
    await call(client, "DELETE", "/api/v1/tokens/nope", admin, 404)


async def test_the_database_holds_only_a_hash_of_each_secret(node: Runtime) -> None:
    secret = await make_token(node, "kept", Scope.READ)
    (stored,) = await node.journal.tokens()
    assert stored.hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(stored)


async def test_revoking_the_last_token_does_not_open_the_api(
    node: Runtime, client: TestClient
) -> None:
    await make_token(node, "only", Scope.ADMIN)
    await node.journal.revoke_token("only", node.clock())
    await call(client, "GET", TASKS, None, 401)


@pytest.mark.parametrize(
    ("settings", "tasks_status", "metrics_status"),
    [
        ({"auth": "required"}, 401, 401),
        ({"auth": "required", "metrics_public": "1"}, 401, 200),
        ({"auth": "off"}, 200, 200),
    ],
)
async def test_auth_modes(
    database_url: str, aiohttp_client: Any, settings: dict[str, str],
    tasks_status: int, metrics_status: int,
) -> None:  # fmt: skip
    runtime = Runtime(node_config(database_url, **settings), make_registry(Gates()))
    await runtime.start()
    try:
        if settings["auth"] == "off":  # a token exists, and still nothing is checked
            await make_token(runtime, "ignored", Scope.READ)
        client = await aiohttp_client(make_app(runtime))
        assert (await client.get(TASKS)).status == tasks_status
        assert (await client.get("/metrics")).status == metrics_status
        assert (await client.get("/health")).status == 200
    finally:
        await runtime.stop()


async def test_the_http_client_sends_its_token_and_raises_typed_refusals(
    node: Runtime, client: TestClient
) -> None:
    from actorq import Client, Forbidden, Unauthorized

    admin = await make_token(node, "root", Scope.ADMIN)
    base = str(client.make_url("")).rstrip("/")
    async with Client(base) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.stats()
    async with Client(base, admin) as root:
        made = await root.create_token("reader", "read")
        assert [t["name"] for t in await root.tokens()] == ["reader", "root"]
    async with Client(base, made["secret"]) as reader:
        await reader.stats()
        with pytest.raises(Forbidden):
            await reader.submit("echo", 1)
    async with Client(base, admin) as root:
        await root.revoke_token("reader")
    async with Client(base, made["secret"]) as reader:
        with pytest.raises(Unauthorized):
            await reader.stats()


async def test_the_event_stream_opens_with_a_single_use_ticket(
    node: Runtime, client: TestClient
) -> None:
    reader = await make_token(node, "viewer", Scope.READ)
    assert (await client.get("/api/v1/events")).status == 401
    ticket = (await call(client, "POST", "/api/v1/events/ticket", reader, 201))["ticket"]
    await call(client, "POST", "/api/v1/events/ticket", None, 401)
    stream = await client.get(f"/api/v1/events?ticket={ticket}")
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream"
    stream.close()
    again = await client.get(f"/api/v1/events?ticket={ticket}")  # used: refused
    assert again.status == 401
    # a ticket opens the stream only, not the rest of the API
    other = (await call(client, "POST", "/api/v1/events/ticket", reader, 201))["ticket"]
    assert (await client.get(f"{TASKS}?ticket={other}")).status == 401
    # a ticket whose token was revoked meanwhile is refused
    await node.journal.revoke_token("viewer", node.clock())
    client.app[KEYRING].forget()
    assert (await client.get(f"/api/v1/events?ticket={other}")).status == 401
