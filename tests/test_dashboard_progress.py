"""The dashboard draws a running task's progress as a bar, in a real Chromium, and follows
it as the handler reports more (the live feed carries the progress events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nodes import Gates, make_registry, node_config
from playwright.async_api import expect
from test_dashboard import (  # noqa: F401 - the fixtures this module's tests use
    Dashboard,
    base_url,
    browser,
    chromium,
    dashboard,
    database_url,
)

from actorq.model import NewTask, TaskState
from actorq.runtime import Runtime
from actorq.tasks import TaskContext, TaskType


@pytest.fixture
async def node(
    database_url: str,  # noqa: F811 - the fixture imported above
    gates: Gates,
) -> AsyncIterator[Runtime]:
    steps = [asyncio.Event() for _ in range(2)]

    async def stepped(payload: Any, ctx: TaskContext) -> None:
        ctx.progress(0.3, "reading")
        await steps[0].wait()
        ctx.progress(0.8, "writing")
        await steps[1].wait()

    registry = make_registry(gates)
    registry.add(TaskType("stepped", stepped, max_attempts=1))
    runtime = Runtime(node_config(database_url), registry)
    runtime.steps = steps  # type: ignore[attr-defined]
    await runtime.start()
    yield runtime
    for step in steps:
        step.set()
    await runtime.stop()


@pytest.mark.browser
async def test_the_task_detail_draws_the_progress_bar_and_follows_it(
    node: Runtime,
    dashboard: Dashboard,  # noqa: F811
) -> None:
    page = dashboard.page
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    (task,) = await node.submit([NewTask("stepped", max_attempts=1)])
    await dashboard.row(task.id).click()
    bar = page.get_by_test_id("detail-progress")
    text = page.get_by_test_id("detail-progress-text")
    await expect(text).to_have_text("30% · reading")
    assert await bar.get_attribute("value") == "0.3"
    node.steps[0].set()  # type: ignore[attr-defined]
    await expect(text).to_have_text("80% · writing")  # a second later, by the live feed
    assert await bar.get_attribute("value") == "0.8"
    node.steps[1].set()  # type: ignore[attr-defined]
    assert (await node.wait_for(task.id, timeout=10)).state is TaskState.SUCCEEDED
    await expect(page.get_by_test_id("task-detail")).to_have_attribute("data-state", "succeeded")
    await expect(text).to_have_text("80% · writing")  # the last report stays with the task
    assert dashboard.errors == []
