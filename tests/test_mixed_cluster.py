"""Nodes running different code on one database, in one process, on both backends: an API
node that does not import a handler accepts tasks of a type another live node serves, with
that type's defaults, and refuses (422) a type nobody serves; a task whose type no live node
serves waits, visibly, and runs once a node serving it is back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import node_config
from procs import until

from actorq.app import App
from actorq.builtin import builtin_registry
from actorq.errors import UnknownTaskType
from actorq.http.app import make_app
from actorq.model import TaskState
from actorq.runtime import Runtime
from actorq.tasks import Registry, TaskType


async def job(payload: Any) -> Any:
    return {"ran": payload}


def jobs_registry() -> Registry:
    registry = Registry()
    registry.add(TaskType("job", job, queue="jobs", priority=4, max_attempts=7, timeout=9.0))
    return registry


async def start(database_url: str, name: str, registry: Registry) -> Runtime:
    runtime = Runtime(node_config(database_url, node=name), registry)
    await runtime.start()
    return runtime


@pytest.fixture
async def api_node(database_url: str) -> AsyncIterator[Runtime]:
    """A node with the example types only (what `actorq serve` runs)."""
    runtime = await start(database_url, "api", builtin_registry())
    yield runtime
    await runtime.stop()


@pytest.fixture
async def api(api_node: Runtime, aiohttp_client: Any) -> TestClient:
    client: TestClient = await aiohttp_client(make_app(api_node))
    return client


async def test_api_node_accepts_a_type_only_another_live_node_serves(
    database_url: str, api_node: Runtime, api: TestClient
) -> None:
    worker = await start(database_url, "worker", jobs_registry())
    try:
        resp = await api.post("/api/v1/tasks", json={"type": "job", "payload": 1})
        assert resp.status == 201, await resp.text()
        task = await resp.json()
        # The defaults of the type as the serving node registered it.
        assert (task["queue"], task["priority"], task["max_attempts"], task["timeout"]) == (
            "jobs", 4, 7, 9.0,
        )  # fmt: skip
        done = await worker.wait_for(task["id"], timeout=20)
        assert done.state is TaskState.SUCCEEDED
        assert done.result == {"ran": 1}
        assert done.worker is not None
        assert done.worker.startswith("worker/")
    finally:
        await worker.stop()


async def test_a_type_no_live_node_serves_is_422_also_in_a_batch(
    database_url: str, api: TestClient
) -> None:
    worker = await start(database_url, "worker", jobs_registry())
    try:
        resp = await api.post("/api/v1/tasks", json={"type": "nobody"})
        assert resp.status == 422
        assert (await resp.json())["error"]["code"] == "unknown_task_type"
        resp = await api.post("/api/v1/tasks", json=[{"type": "job"}, {"type": "nobody"}])
        assert resp.status == 422
        assert (await resp.json())["error"]["code"] == "unknown_task_type"
    finally:
        await worker.stop()


async def test_a_stopped_node_no_longer_lends_its_types(database_url: str, api: TestClient) -> None:
    worker = await start(database_url, "worker", jobs_registry())
    await worker.stop()  # it removes its record on the way out
    resp = await api.post("/api/v1/tasks", json={"type": "job"})
    assert resp.status == 422


async def test_types_lists_the_cluster_with_the_nodes_serving_each(
    database_url: str, api: TestClient
) -> None:
    worker = await start(database_url, "worker", jobs_registry())
    try:
        body = await (await api.get("/api/v1/types")).json()
    finally:
        await worker.stop()
    by_name = {t["name"]: t for t in body["types"]}
    assert by_name["job"] == {
        "name": "job", "queue": "jobs", "priority": 4, "max_attempts": 7, "timeout": 9.0,
        "retry": None, "nodes": ["worker"],
    }  # fmt: skip
    assert by_name["echo"]["nodes"] == ["api"]
    assert set(by_name) == {"job", *builtin_registry().names()}


async def test_a_task_whose_type_no_live_node_serves_waits_visibly_then_runs(
    database_url: str, api_node: Runtime, api: TestClient
) -> None:
    worker = await start(database_url, "worker", jobs_registry())
    resp = await api.post("/api/v1/tasks", json={"type": "job", "delay": 1})
    task_id = (await resp.json())["id"]
    await worker.stop()

    async def waiting() -> bool:
        stats = await (await api.get("/api/v1/stats")).json()
        return bool(stats["waiting_for_handler"] == {"job": 1})

    await until(waiting, 20)  # promoted to queued by the API node, claimed by nobody
    assert (await api_node.get(task_id)).state is TaskState.QUEUED

    worker = await start(database_url, "worker-2", jobs_registry())
    try:
        done = await worker.wait_for(task_id, timeout=20)
        assert done.state is TaskState.SUCCEEDED
        assert done.attempt == 1
    finally:
        await worker.stop()

    async def none_waiting() -> bool:
        stats = await (await api.get("/api/v1/stats")).json()
        return bool(stats["waiting_for_handler"] == {})

    await until(none_waiting, 20)


async def test_an_app_without_a_node_enqueues_a_type_a_live_node_serves(
    database_url: str, api_node: Runtime
) -> None:
    worker = await start(database_url, "worker", jobs_registry())
    app = App(database_url)  # imports no handler, runs no node
    try:
        task = await app.enqueue("job", 2)
        assert (task.queue, task.max_attempts) == ("jobs", 7)
        with pytest.raises(UnknownTaskType):
            await app.enqueue("nobody")
        done = await worker.wait_for(task.id, timeout=20)
        assert done.state is TaskState.SUCCEEDED
    finally:
        await app.stop()
        await worker.stop()
