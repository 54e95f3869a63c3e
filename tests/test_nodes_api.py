"""The nodes registry through the API, on both backends: what a node says of itself, an
operator's pause, resume and drain (also of another node sharing the database), and nodes gone
by goodbye or by silence."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config
from procs import until

from actorq.cli import main
from actorq.http.app import make_app
from actorq.journal.base import Journal
from actorq.model import Task, TaskState
from actorq.nodes import LIVENESS_INTERVALS, Node
from actorq.runtime import Runtime

TASKS = "/api/v1/tasks"
NODES = "/api/v1/nodes"


async def call(client: TestClient, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    resp = await client.request(method, path, **kw)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def submit(client: TestClient, body: Any) -> Any:
    return await call(client, "POST", TASKS, 201, json=body)


async def finished(node: Runtime, task_id: str) -> Task:
    """Wait for a task another node runs (on SQLite, this node's feed does not see its
    events: read the task)."""

    async def done() -> bool:
        return (await node.get(task_id)).state.finished

    await until(done, 10)
    return await node.get(task_id)


@pytest.fixture
async def other(database_url: str, gates: Gates) -> AsyncIterator[Runtime]:
    """A second node on the same database, beating fast so it hears orders quickly."""
    config = node_config(database_url, node="other-node", heartbeat_seconds=0.2, concurrency=1)
    runtime = Runtime(config, make_registry(gates))
    await runtime.start()
    yield runtime
    for name in list(gates.started):
        gates.open(name)
    await runtime.stop()


async def test_a_node_lists_itself_with_what_it_serves(client: TestClient) -> None:
    listed = (await call(client, "GET", NODES))["nodes"]
    assert [n["id"] for n in listed] == ["test-node"]
    me = listed[0]
    assert me["status"] == "live"
    assert (me["concurrency"], me["paused"], me["draining"], me["gone_at"]) == (4, False, False,
                                                                               None)  # fmt: skip
    assert "gate" in me["types"]
    assert me["queues"] is None
    assert me["version"]
    assert me["pid"] > 0
    assert me["host"]
    assert me["last_heartbeat"].endswith("Z")
    assert await call(client, "GET", f"{NODES}/test-node") == me


async def test_an_unknown_node_is_a_404_for_reads_and_commands(client: TestClient) -> None:
    for method, path in (("GET", f"{NODES}/nope"), ("POST", f"{NODES}/nope/pause"),
                         ("POST", f"{NODES}/nope/drain")):  # fmt: skip
        body = await call(client, method, path, 404)
        assert body["error"]["code"] == "node_not_found"
        assert body["error"]["node"] == "nope"


async def test_a_paused_node_gives_back_held_tasks_finishes_running_ones_and_takes_no_more(
    single_worker_node: Runtime, gates: Gates, client_single: TestClient
) -> None:
    node, client = single_worker_node, client_single
    running = await submit(client, {"type": "gate", "payload": {"gate": "r"}})
    await gates.wait_started("r")
    held = await submit(client, {"type": "record", "payload": "held"})
    await node.wait_for(held["id"], {TaskState.CLAIMED}, timeout=10)  # prefetched

    shown = await call(client, "POST", f"{NODES}/test-node/pause")
    assert shown["paused"] is True
    # The held task goes back to its queue (no attempt counted); the running one runs on.
    back = await node.wait_for(held["id"], {TaskState.QUEUED}, timeout=10)
    assert (back.attempt, back.worker) == (0, None)
    history = [e.kind.value for e in await node.history(held["id"])]
    assert history[-1] == "released"
    later = await submit(client, {"type": "record", "payload": "later"})
    gates.open("r")
    assert (await node.wait_for(running["id"], timeout=10)).state is TaskState.SUCCEEDED
    await asyncio.sleep(1.0)  # twice the node's poll: it would have claimed by now
    for task_id in (held["id"], later["id"]):
        assert (await node.get(task_id)).state is TaskState.QUEUED

    shown = await call(client, "POST", f"{NODES}/test-node/resume")
    assert shown["paused"] is False
    for task_id in (held["id"], later["id"]):
        assert (await node.wait_for(task_id, timeout=10)).state is TaskState.SUCCEEDED


async def test_a_pause_asked_on_one_node_stops_the_other_node_it_names(
    node: Runtime, other: Runtime, gates: Gates, client: TestClient
) -> None:
    await call(client, "POST", f"{NODES}/test-node/pause")  # only `other` may take work
    shown = await call(client, "POST", f"{NODES}/other-node/pause")
    assert (shown["id"], shown["paused"]) == ("other-node", True)

    async def other_obeys() -> bool:
        return other._paused

    await until(other_obeys, 10)
    task = await submit(client, {"type": "record", "payload": 1})
    await asyncio.sleep(1.0)  # twice the poll
    assert (await node.get(task["id"])).state is TaskState.QUEUED
    await call(client, "POST", f"{NODES}/other-node/resume")
    done = await finished(node, task["id"])
    assert done.state is TaskState.SUCCEEDED
    assert done.worker is not None
    assert done.worker.startswith("other-node/")


async def test_a_drained_node_finishes_its_running_task_then_stops_waiting(
    node: Runtime, other: Runtime, gates: Gates, client: TestClient
) -> None:
    await call(client, "POST", f"{NODES}/test-node/pause")
    task = await submit(client, {"type": "gate", "payload": {"gate": "d"}})
    await gates.wait_started("d")  # on `other`, the only node taking work
    shown = await call(client, "POST", f"{NODES}/other-node/drain")
    assert shown["draining"] is True

    async def obeys() -> bool:
        return other._paused

    await until(obeys, 10)
    waiting = asyncio.ensure_future(other.wait())
    await asyncio.sleep(0.5)
    assert not waiting.done()
    assert not other.drained
    gates.open("d")
    await asyncio.wait_for(waiting, 10)
    assert other.drained
    assert (await finished(node, task["id"])).state is TaskState.SUCCEEDED


async def test_a_stopped_node_is_listed_gone_and_takes_no_command(
    node: Runtime, database_url: str, gates: Gates, client: TestClient
) -> None:
    config = node_config(database_url, node="short-lived", heartbeat_seconds=0.2)
    brief = Runtime(config, make_registry(gates))
    await brief.start()
    live = await call(client, "GET", f"{NODES}/short-lived")
    assert live["status"] == "live"
    await brief.stop()
    listed = {n["id"]: n for n in (await call(client, "GET", NODES))["nodes"]}
    assert listed["short-lived"]["status"] == "gone"
    assert listed["short-lived"]["gone_at"] is not None
    assert listed["test-node"]["status"] == "live"
    body = await call(client, "POST", f"{NODES}/short-lived/pause", 409)
    assert body["error"]["code"] == "invalid_transition"


async def test_a_node_silent_past_its_lease_is_gone_and_long_gone_ones_are_forgotten(
    node: Runtime, client: TestClient
) -> None:
    journal: Journal = node.journal
    now = node.clock()
    lease = LIVENESS_INTERVALS * node.config.heartbeat_interval
    silent = Node("silent", "h", 1, now - 100, now - lease - 1, {})
    ancient = Node("ancient", "h", 2, now - 10_000, now - 7200, {})
    for record in (silent, ancient):
        await journal.register_node(record, start=True)
    listed = {n["id"]: n for n in (await call(client, "GET", NODES))["nodes"]}
    assert listed["silent"]["status"] == "gone"
    assert listed["silent"]["gone_at"] is None
    assert "ancient" not in listed  # gone longer than GONE_KEPT_SECONDS: not shown
    assert [n.node for n in await journal.live_nodes(now - lease)] == ["test-node"]
    await journal.forget_nodes(now - 3600)
    assert await journal.get_node("ancient") is None
    assert await journal.get_node("silent") is not None


async def test_a_restarted_node_starts_without_the_orders_of_its_last_life(
    database_url: str, gates: Gates, aiohttp_client: Any
) -> None:
    config = node_config(database_url, node="phoenix")
    first = Runtime(config, make_registry(gates))
    await first.start()
    client = await aiohttp_client(make_app(first))
    await call(client, "POST", f"{NODES}/phoenix/pause")
    await first.stop()
    second = Runtime(config, make_registry(gates))
    await second.start()
    try:
        record = await second.journal.get_node("phoenix")
        assert record is not None
        assert not record.paused
        assert record.gone_at is None
    finally:
        await second.stop()


async def test_node_answers_match_the_openapi_document(client: TestClient) -> None:
    from test_openapi import check

    one = "/api/v1/nodes/{node}"
    await check(await client.get(NODES), NODES, 200)
    await check(await client.get(f"{NODES}/test-node"), one, 200)
    for command in ("pause", "resume", "drain"):
        await check(await client.post(f"{NODES}/test-node/{command}"), f"{one}/{command}", 200)
    await check(await client.get(f"{NODES}/nope"), one, 404, "node_not_found")
    await check(await client.post(f"{NODES}/nope/pause"), f"{one}/pause", 404, "node_not_found")


async def actorq_cli(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    got = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    assert got == code, (out, err)
    return json.loads(out) if code == 0 else err


async def test_the_cli_lists_and_orders_nodes_on_the_database(
    node: Runtime, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ("--database-url", database_url)
    listed = await actorq_cli(capsys, "nodes", "list", *db)
    assert [(n["id"], n["status"]) for n in listed] == [("test-node", "live")]
    shown = await actorq_cli(capsys, "nodes", "pause", "test-node", *db)
    assert shown["paused"] is True

    async def obeys() -> bool:  # at its next heartbeat (SQLite) or at once (NOTIFY)
        return node._paused

    await until(obeys, 3 * node.config.heartbeat_interval)
    await actorq_cli(capsys, "nodes", "resume", "test-node", *db)

    async def resumes() -> bool:
        return not node._paused

    await until(resumes, 3 * node.config.heartbeat_interval)
    err = await actorq_cli(capsys, "nodes", "drain", "nope", *db, code=1)
    assert "no node named 'nope'" in err


async def test_the_cli_orders_a_node_through_a_server(
    client: TestClient, node: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(client.make_url("")).rstrip("/")
    shown = await actorq_cli(capsys, "nodes", "pause", "test-node", "--url", url)
    assert shown["paused"] is True
    assert node._paused  # the server asked is the node: it obeyed before answering
    one = await actorq_cli(capsys, "nodes", "list", "test-node", "--url", url)
    assert one["paused"] is True
    err = await actorq_cli(capsys, "nodes", "pause", "nope", "--url", url, code=1)
    assert "no node named 'nope'" in err
