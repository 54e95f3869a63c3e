"""Two nodes in one process sharing one PostgreSQL: wake-ups and cancellation cross nodes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from conftest import PG_DSN
from nodes import Gates, make_registry, node_config

from actorq.errors import InvalidTransition, StorageError
from actorq.model import NewTask, TaskState
from actorq.runtime import Runtime

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pair(postgres_url: str, gates: Gates) -> AsyncIterator[tuple[Runtime, Runtime]]:
    # A long fallback poll: anything picked up quickly was woken by a notification.
    a = Runtime(node_config(postgres_url, node="a", poll_seconds=60), make_registry(gates))
    b = Runtime(node_config(postgres_url, node="b", poll_seconds=60, concurrency=1,
                            queues=("b-only",)), make_registry(gates))  # fmt: skip
    await a.start()
    await b.start()
    yield a, b
    for name in list(gates.started):
        gates.open(name)
    await b.stop()
    await a.stop()


async def test_work_submitted_on_one_node_wakes_another_without_polling(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, b = pair
    (task,) = await b.submit([NewTask("echo", {"from": "b"})])
    done = await a.wait_for(task.id, timeout=5)
    assert done.state is TaskState.SUCCEEDED
    assert done.worker is not None
    assert done.worker.startswith("a/")


async def test_each_node_follows_the_whole_cluster_in_its_feed_stats_and_waits(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, b = pair
    async with b.live_events() as feed:
        (task,) = await a.submit([NewTask("echo", {"from": "a"})])
        done = await b.wait_for(task.id, timeout=10)  # run by a: b only reads the journal
        assert done.state is TaskState.SUCCEEDED
        seen: list[tuple[str, str, str]] = []
        async with asyncio.timeout(10):
            while not seen or seen[-1][0] != "succeeded":
                item = await feed.get()
                if item["task_id"] == task.id:
                    seen.append((item["kind"], item["state"], item["node"]))
    assert seen == [
        ("submitted", "queued", "a"),
        ("claimed", "claimed", "a"),
        ("succeeded", "succeeded", "a"),  # it carries the start of a handler this short
    ]
    stats = await b.stats()
    assert stats["scope"] == "cluster"
    assert stats["tasks"]["succeeded"] == 1
    assert stats["tasks"]["queued"] == stats["tasks"]["claimed"] == stats["tasks"]["running"] == 0
    assert stats["events"] == {"submitted": 1, "claimed": 1, "succeeded": 1}
    metrics = (await b.metrics()).decode()
    # The task gauge is the cluster's; event counters are the node's own (b ran nothing).
    assert 'actorq_tasks{queue="default",state="succeeded"} 1.0' in metrics
    assert 'actorq_events_total{kind="succeeded"}' not in metrics
    assert 'actorq_events_total{kind="succeeded"} 1.0' in (await a.metrics()).decode()


async def test_cancel_on_one_node_reaches_the_handler_running_on_another(
    pair: tuple[Runtime, Runtime], gates: Gates
) -> None:
    a, b = pair
    (task,) = await b.submit([NewTask("gate", {"gate": "x"})])
    await gates.wait_started("x")
    assert (await b.get(task.id)).worker.startswith("a/")  # type: ignore[union-attr]
    cancelled = await b.cancel(task.id)
    assert cancelled.state is TaskState.CANCELLED
    await gates.wait_cancelled("x")
    with pytest.raises(InvalidTransition):
        await a.cancel(task.id)


async def test_dropped_connections_are_survived_and_no_acknowledged_task_is_lost(
    postgres_url: str, gates: Gates
) -> None:
    # Its own application name, so that only this node's connections are killed.
    name = f"actorq-test-{uuid.uuid4().hex[:12]}"
    url = f"{postgres_url}&application_name={name}"
    node = Runtime(node_config(url, node="solo", lease_seconds=1.5, poll_seconds=0.3),
                   make_registry(gates))  # fmt: skip
    await node.start()
    try:
        slow = [NewTask("slow", {"seconds": 0.01}) for _ in range(40)]
        acked = [t.id for t in await node.submit(slow)]
        admin = await asyncpg.connect(PG_DSN)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                name,
            )
        finally:
            await admin.close()
        assert killed >= 1
        refused = 0
        for _ in range(40):
            try:
                (task,) = await node.submit([NewTask("echo", "after")])
                acked.append(task.id)
            except StorageError:
                refused += 1  # not acknowledged: the caller knows it must try again
        assert len(acked) > 40, "the node carried on once the connections were back"
        for task_id in acked:
            done = await node.wait_for(task_id, timeout=30)
            assert done.state is TaskState.SUCCEEDED
    finally:
        await node.stop()
