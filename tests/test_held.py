"""What a node shows of the tasks its workers hold ahead of time (prefetch), and priority
across prefetch: on both backends, through the API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config
from procs import until

from actorq.actors import worker
from actorq.lifecycle import carries_start
from actorq.model import EventKind, NewTask, TaskState
from actorq.runtime import Runtime

TASKS = "/api/v1/tasks"


async def post(client: TestClient, body: Any) -> Any:
    resp = await client.post(TASKS, json=body)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def ids_in(client: TestClient, state: str) -> list[str]:
    page = await (await client.get(TASKS, params={"state": state})).json()
    return [t["id"] for t in page["tasks"]]


def when(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_a_held_task_is_claimed_not_running_and_a_higher_priority_goes_first(
    single_worker_node: Runtime, gates: Gates, client_single: TestClient
) -> None:
    node, client = single_worker_node, client_single
    blocker = await post(client, {"type": "gate", "payload": {"gate": "g"}})
    await gates.wait_started("g")
    low = await post(client, {"type": "record", "payload": "low", "priority": 1})
    await node.wait_for(low["id"], {TaskState.CLAIMED}, timeout=10)  # in the busy worker's hand

    # A handler's start is journaled within a moment of it (worker.START_WINDOW).
    await node.wait_for(blocker["id"], {TaskState.RUNNING}, timeout=10)
    assert await ids_in(client, "running") == [blocker["id"]]
    assert await ids_in(client, "claimed") == [low["id"]]
    shown = await (await client.get(f"{TASKS}/{low['id']}")).json()
    assert (shown["state"], shown["attempt"], shown["started_at"]) == ("claimed", 0, None)
    assert shown["worker"] is not None

    async def stats_show_one_running_and_one_claimed() -> bool:
        # On PostgreSQL the counts follow the journal's tail: exact within a moment.
        tasks = (await (await client.get("/api/v1/stats")).json())["tasks"]
        return (tasks["running"], tasks["claimed"]) == (1, 1)

    await until(stats_show_one_running_and_one_claimed, 10)

    high = await post(client, {"type": "record", "payload": "high", "priority": 9})
    opened = node.clock()
    gates.open("g")
    done_low = await node.wait_for(low["id"], timeout=10)
    done_high = await node.wait_for(high["id"], timeout=10)

    assert gates.order == ["high", "low"], "a held task never starts before a better ready one"
    assert done_low.state is done_high.state is TaskState.SUCCEEDED
    assert done_low.attempt == done_high.attempt == 1
    assert done_low.started_at is not None
    assert done_low.started_at >= opened
    kinds = [e.kind.value for e in await node.history(low["id"])]
    assert kinds == ["submitted", "claimed", "released", "claimed", "succeeded"]
    body = await (await client.get(f"{TASKS}/{low['id']}")).json()
    assert when(body["started_at"]) >= opened, "started_at is when the handler started"


async def test_fifo_within_a_priority_holds_across_prefetch(
    single_worker_node: Runtime, gates: Gates, client_single: TestClient
) -> None:
    node, client = single_worker_node, client_single
    await post(client, {"type": "gate", "payload": {"gate": "g"}})
    await gates.wait_started("g")
    first = await post(client, {"type": "record", "payload": 1})
    await node.wait_for(first["id"], {TaskState.CLAIMED}, timeout=10)
    rest = [await post(client, {"type": "record", "payload": n}) for n in range(2, 6)]
    gates.open("g")
    for task in [first, *rest]:
        await node.wait_for(task["id"], timeout=10)
    assert gates.order == [1, 2, 3, 4, 5]


async def test_cancelling_a_held_task_drops_it_from_the_workers_hand(
    single_worker_node: Runtime, gates: Gates, client_single: TestClient
) -> None:
    node, client = single_worker_node, client_single
    await post(client, {"type": "gate", "payload": {"gate": "g"}})
    await gates.wait_started("g")
    held = await post(client, {"type": "record", "payload": "never"})
    await node.wait_for(held["id"], {TaskState.CLAIMED}, timeout=10)
    cancelled = await (await client.delete(f"{TASKS}/{held['id']}")).json()
    assert (cancelled["state"], cancelled["error"]) == ("cancelled", None)
    after = await post(client, {"type": "record", "payload": "after"})
    gates.open("g")
    await node.wait_for(after["id"], timeout=10)
    assert gates.order == ["after"]
    kinds = [e.kind.value for e in await node.history(held["id"])]
    assert kinds == ["submitted", "claimed", "cancelled"]


@pytest.mark.parametrize("window", [0.0, 0.001])
async def test_every_start_is_journaled_however_the_start_window_falls(
    database_url: str, gates: Gates, monkeypatch: pytest.MonkeyPatch, window: float
) -> None:
    """A handler's start is written after worker.START_WINDOW, or with its outcome if that
    comes first. Whichever wins, the start must be written once: a lost one left the task
    claimed until its lease expired."""
    monkeypatch.setattr(worker, "START_WINDOW", window)
    node = Runtime(node_config(database_url, concurrency=4), make_registry(gates))
    await node.start()
    try:
        tasks = await node.submit([NewTask("echo", n) for n in range(300)])
        for task in tasks:
            done = await node.wait_for(task.id, timeout=10)
            assert (done.state, done.attempt) == (TaskState.SUCCEEDED, 1)
        for task in tasks[::7]:
            history = await node.history(task.id)
            # Once: as a 'started' event, or carried by the outcome when the run was shorter.
            assert sum(e.kind is EventKind.STARTED or carries_start(e) for e in history) == 1
            assert history[-1].kind is EventKind.SUCCEEDED
    finally:
        await node.stop()
