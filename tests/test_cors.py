"""Cross-origin calls (CORS), with real requests carrying Origin: off by default, allowed for
the listed origins only, preflight answered, refusals readable by the allowed page."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config

from actorq.auth import Scope, new_token
from actorq.http.app import make_app
from actorq.http.keys import KEYRING
from actorq.runtime import Runtime

PAGE = "https://ops.example.com"
PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def cors_node(database_url: str, aiohttp_client: Any, **settings: Any) -> Any:
    runtime = Runtime(node_config(database_url, **settings), make_registry(Gates()))
    await runtime.start()
    client: TestClient = await aiohttp_client(make_app(runtime))
    return runtime, client


async def test_off_by_default(node: Runtime, client: TestClient) -> None:
    resp = await client.get("/api/v1/stats", headers={"Origin": PAGE})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.options("/api/v1/tasks", headers=PREFLIGHT)
    assert resp.status == 405
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_listed_origins_only_with_preflight(database_url: str, aiohttp_client: Any) -> None:
    runtime, client = await cors_node(database_url, aiohttp_client, cors_origins=(PAGE,))
    try:
        resp = await client.options("/api/v1/tasks", headers=PREFLIGHT)
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == PAGE
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        assert "Access-Control-Allow-Credentials" not in resp.headers
        resp = await client.post("/api/v1/tasks", json={"type": "echo"}, headers={"Origin": PAGE})
        assert resp.status == 201
        assert resp.headers["Access-Control-Allow-Origin"] == PAGE
        assert "Origin" in resp.headers.getall("Vary")

        evil = {**PREFLIGHT, "Origin": "https://evil.example"}
        resp = await client.options("/api/v1/tasks", headers=evil)
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
        resp = await client.get("/api/v1/stats", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in resp.headers

        # with auth on, the allowed page can read its 401 (and so ask for a token)
        token, secret = new_token("page", Scope.READ, runtime.clock(), "test")
        await runtime.journal.create_token(token)
        client.app[KEYRING].forget()  # made behind the node's back: else seen within 1 s
        resp = await client.get("/api/v1/stats", headers={"Origin": PAGE})
        assert resp.status == 401
        assert resp.headers["Access-Control-Allow-Origin"] == PAGE
        assert "WWW-Authenticate" in resp.headers["Access-Control-Expose-Headers"]
        resp = await client.get(
            "/api/v1/stats", headers={"Origin": PAGE, "Authorization": f"Bearer {secret}"}
        )
        assert resp.status == 200
    finally:
        await runtime.stop()
