"""Two nodes in one process sharing one PostgreSQL: wake-ups and cancellation cross nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nodes import Gates, make_registry, node_config

from actorq.errors import InvalidTransition
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
