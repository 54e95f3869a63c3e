"""The example webhook refuses internal addresses (request forgery), unless allow-listed;
tested against a real local aiohttp server."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from actorq.builtin import builtin_registry
from actorq.steering import Permanent
from actorq.webhook import MAX_ANSWER, WebhookFailure, make_webhook, parse_allow, refused


@pytest.fixture
async def target(aiohttp_server: Any) -> tuple[TestServer, list[Any]]:
    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("/hook")

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * (MAX_ANSWER + 1))

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/redirect", redirect)
    app.router.add_post("/big", big)
    server = await aiohttp_server(app)
    return server, received


async def test_loopback_is_refused_by_address_and_by_name(
    target: tuple[TestServer, list[Any]],
) -> None:
    server, received = target
    webhook = make_webhook()
    for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]"):
        url = f"http://{host}:{server.port}/hook"
        with pytest.raises(Permanent, match="refused"):
            await webhook({"url": url, "body": {"n": 1}})
    assert received == []  # nothing reached the server


async def test_allow_listed_addresses_are_reached(target: tuple[TestServer, list[Any]]) -> None:
    server, received = target
    for allow in (["127.0.0.1"], ["127.0.0.0/8"]):
        webhook = make_webhook(parse_allow(allow))
        answer = await webhook({"url": f"http://127.0.0.1:{server.port}/hook", "body": {"n": 2}})
        assert answer["status"] == 200
    # by name too: localhost resolves to loopback only (127.0.0.1, and ::1 where it exists)
    webhook = make_webhook(parse_allow(["127.0.0.0/8", "::1"]))
    await webhook({"url": f"http://localhost:{server.port}/hook", "body": {"n": 3}})
    assert received == [{"n": 2}, {"n": 2}, {"n": 3}]


async def test_redirects_are_not_followed_and_answers_are_bounded(
    target: tuple[TestServer, list[Any]],
) -> None:
    server, received = target
    webhook = make_webhook(parse_allow(["127.0.0.1"]))
    with pytest.raises(WebhookFailure, match="answered 302"):
        await webhook({"url": f"http://127.0.0.1:{server.port}/redirect", "body": {}})
    with pytest.raises(WebhookFailure, match="larger than"):
        await webhook({"url": f"http://127.0.0.1:{server.port}/big", "body": {}})
    assert received == []


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
     "224.0.0.1", "100.64.0.1", "::1", "fe80::1", "fc00::1", "::", "ff02::1"],
)  # fmt: skip
def test_internal_addresses_are_refused(address: str) -> None:
    import ipaddress

    assert refused(ipaddress.ip_address(address), ())


def test_public_addresses_pass() -> None:
    import ipaddress

    assert not refused(ipaddress.ip_address("93.184.216.34"), ())
    assert not refused(ipaddress.ip_address("2606:2800:220:1::1"), ())


async def test_a_node_dead_letters_a_webhook_to_its_own_api(
    database_url: str, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    """End to end: the task planted through the API cannot reach the node's own API."""
    from nodes import node_config

    from actorq.http.app import make_app
    from actorq.runtime import Runtime

    runtime = Runtime(node_config(database_url), builtin_registry())
    await runtime.start()
    try:
        client = await aiohttp_client(make_app(runtime))
        url = str(client.make_url("/api/v1/tasks"))
        resp = await client.post("/api/v1/tasks", json={
            "type": "webhook", "payload": {"url": url, "body": {"type": "echo"}}})  # fmt: skip
        task = await resp.json()
        done = await runtime.wait_for(task["id"], timeout=15)
        assert done.state.value == "dead"  # at once: another attempt would be refused too
        assert done.attempt == 1
        assert "refused" in (done.error or "")
        page = await (await client.get("/api/v1/tasks?type=echo")).json()
        assert page["tasks"] == []  # the forged submission never happened
    finally:
        await runtime.stop()


def test_a_bad_allow_list_is_a_usage_error() -> None:
    from actorq.errors import InvalidInput

    with pytest.raises(InvalidInput, match="ACTORQ_WEBHOOK_ALLOW"):
        builtin_registry(["not-an-address"])
