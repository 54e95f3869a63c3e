"""A handler's progress (``ctx.progress``), on both backends: journaled at most once a second
per task without losing the last report of a burst, from async and threaded handlers, shown
in the task's body and history, carried by the live feed, reproduced by a replay, and a bad
value refused in the handler."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config
from procs import until

from actorq import audit
from actorq.errors import InvalidInput
from actorq.http.app import make_app
from actorq.model import EventKind, NewTask, TaskState
from actorq.runtime import Runtime
from actorq.tasks import TaskContext, TaskType

BURST = [i / 10 for i in range(1, 11)]


class Handlers:
    """Handlers that report progress, and gates the test opens between their steps."""

    def __init__(self) -> None:
        self.step = asyncio.Event()
        self.burst_done = asyncio.Event()
        self.thread_step = threading.Event()
        self.refused: list[str] = []

    async def bursty(self, payload: Any, ctx: TaskContext) -> str:
        for fraction in BURST[:5]:  # a burst: only the first and the last get written
            ctx.progress(fraction, f"step {fraction}")
        self.burst_done.set()
        await self.step.wait()
        ctx.progress(0.9, "almost")  # the run ends within the second: written at the end
        return "done"

    def threaded(self, payload: Any, ctx: TaskContext) -> int:
        ctx.progress(0.25, "from a thread")
        self.thread_step.wait(10)
        ctx.progress(0.75)
        return 1

    async def wrong(self, payload: Any, ctx: TaskContext) -> None:
        for bad in (1.5, -0.1, float("nan"), "half", True):
            try:
                ctx.progress(bad)
            except InvalidInput as exc:
                self.refused.append(str(exc))
        ctx.progress(0.5, "x" * 1001)  # too long: raises, and fails the attempt


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
async def node(database_url: str, gates: Gates, handlers: Handlers) -> AsyncIterator[Runtime]:
    registry = make_registry(gates)
    for task_type in (
        TaskType("bursty", handlers.bursty, max_attempts=1),
        TaskType("threaded", handlers.threaded, max_attempts=1),
        TaskType("wrong", handlers.wrong, max_attempts=1),
    ):
        registry.add(task_type)
    runtime = Runtime(node_config(database_url), registry)
    await runtime.start()
    yield runtime
    handlers.step.set()
    handlers.thread_step.set()
    await runtime.stop()


async def progress_events(node: Runtime, task_id: str) -> list[Any]:
    return [e for e in await node.history(task_id) if e.kind is EventKind.PROGRESS]


async def until_progress(node: Runtime, task_id: str, n: int) -> list[Any]:
    async def written() -> bool:
        return len(await progress_events(node, task_id)) >= n

    await until(written, 10)
    return await progress_events(node, task_id)


async def test_a_burst_is_written_once_a_second_and_its_last_value_is_kept(
    node: Runtime, handlers: Handlers, aiohttp_client: Any
) -> None:
    client: TestClient = await aiohttp_client(make_app(node))
    async with node.live_events() as feed:
        (task,) = await node.submit([NewTask("bursty")])
        await handlers.burst_done.wait()
        first = await until_progress(node, task.id, 1)
        assert [e.data["fraction"] for e in first] == [0.1]  # at once: nothing written before
        # The rest of the burst waits for the second to be up; then its last value goes in.
        second = await until_progress(node, task.id, 2)
        assert [e.data for e in second][1] == {"fraction": 0.5, "message": "step 0.5"}
        assert second[1].at - second[0].at < 0.1  # reported when the burst was, written later
        shown = await (await client.get(f"/api/v1/tasks/{task.id}")).json()
        assert shown["state"] == "running"
        assert shown["progress"]["fraction"] == 0.5
        assert shown["progress"]["message"] == "step 0.5"
        assert shown["progress"]["at"].endswith("Z")

        handlers.step.set()
        done = await node.wait_for(task.id, timeout=10)
        kinds = []
        async with asyncio.timeout(10):
            while "succeeded" not in kinds:
                item = await feed.get()
                if item.get("task_id") == task.id:
                    kinds.append(item["kind"])
    assert kinds.count("progress") == 3  # the live feed carries them like any event
    assert done.state is TaskState.SUCCEEDED
    assert done.progress is not None
    assert (done.progress.fraction, done.progress.message) == (0.9, "almost")
    history = [e.kind.value for e in await node.history(task.id)]
    assert history[-2:] == ["progress", "succeeded"]  # the last report before the outcome
    assert history.count("progress") == 3
    report = await audit.verify_projection(node.journal)
    assert report.matches, report  # the fold of the journal gives the same progress
    replayed, _ = await audit.replay(node.journal)
    assert replayed[task.id].progress == done.progress


async def test_a_threaded_handler_reports_progress_too(node: Runtime, handlers: Handlers) -> None:
    (task,) = await node.submit([NewTask("threaded")])
    (first,) = await until_progress(node, task.id, 1)
    assert first.data == {"fraction": 0.25, "message": "from a thread"}
    assert (await node.get(task.id)).progress is not None
    handlers.thread_step.set()
    done = await node.wait_for(task.id, timeout=10)
    assert done.state is TaskState.SUCCEEDED
    assert done.progress is not None
    assert (done.progress.fraction, done.progress.message) == (0.75, None)


async def test_a_bad_progress_is_a_clear_error_in_the_handler(
    node: Runtime, handlers: Handlers
) -> None:
    (task,) = await node.submit([NewTask("wrong", max_attempts=1)])
    done = await node.wait_for(task.id, timeout=10)
    assert len(handlers.refused) == 5
    assert handlers.refused[0] == "progress fraction must be from 0 to 1, got 1.5"
    assert "must be a number from 0 to 1, got 'half'" in handlers.refused[3]
    assert "got True" in handlers.refused[4]
    assert done.state is TaskState.DEAD
    assert done.error == "progress message is longer than 1000 characters"
    assert await progress_events(node, task.id) == []  # nothing bad was journaled
    assert done.progress is None


async def test_a_new_attempt_starts_without_the_last_attempts_progress(
    node: Runtime, handlers: Handlers
) -> None:
    (task,) = await node.submit([NewTask("bursty")])
    await until_progress(node, task.id, 1)
    await node.cancel(task.id)
    await node.wait_for(task.id, timeout=10)
    retried = await node.retry(task.id)
    assert retried.progress is not None  # kept while it waits: what the last run got to
    handlers.step.set()
    done = await node.wait_for(task.id, timeout=10)
    assert done.progress is not None
    assert done.progress.fraction == 0.9
    runs = [e.kind.value for e in await node.history(task.id)]
    started = len(runs) - 1 - runs[::-1].index("started")
    assert runs[started + 1] == "progress"  # the second run's own, from 0.1 again
    first_of_second = [e for e in await node.history(task.id)][started + 1]
    assert first_of_second.data["fraction"] == 0.1
