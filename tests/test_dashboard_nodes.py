"""The dashboard's nodes panel in a real Chromium against a real node: the node with its
running task, pause and resume, a gone node without buttons, and a drain that ends the node."""

from __future__ import annotations

import asyncio

import pytest
from nodes import Gates, make_registry, node_config
from playwright.async_api import Dialog, expect
from test_dashboard import (  # noqa: F401 - the fixtures this module's tests use
    Dashboard,
    base_url,
    browser,
    chromium,
    dashboard,
    database_url,
)

from actorq.model import NewTask
from actorq.runtime import Runtime


@pytest.mark.browser
async def test_nodes_panel_shows_running_tasks_pauses_resumes_and_drains(
    node: Runtime,
    gates: Gates,
    database_url: str,  # noqa: F811 - the fixture imported above
    dashboard: Dashboard,  # noqa: F811
) -> None:
    page = dashboard.page
    brief = Runtime(node_config(database_url, node="brief"), make_registry(gates))
    await brief.start()
    await brief.stop()  # said goodbye: listed gone, with no buttons
    gone = page.locator('[data-testid="node-row"][data-node="brief"]')
    await expect(gone).to_have_attribute("data-state", "gone")
    await expect(gone.locator("button")).to_have_count(0)

    row = page.locator('[data-testid="node-row"][data-node="test-node"]')
    await expect(row).to_have_attribute("data-state", "live")
    (task,) = await node.submit([NewTask("gate", payload={"gate": "g"})])
    await gates.wait_started("g")
    # The node says what it holds at its next heartbeat; the panel shows it, as a link.
    running = row.get_by_test_id("node-running").locator("button")
    await expect(running).to_have_attribute("title", task.id, timeout=10_000)
    await running.click()
    await expect(page.get_by_test_id("task-detail")).to_have_attribute("data-state", "running")

    await row.locator('button[data-action="pause"]').click()
    await expect(row).to_have_attribute("data-state", "paused")
    assert node._paused
    await row.locator('button[data-action="resume"]').click()
    await expect(row).to_have_attribute("data-state", "live")
    assert not node._paused

    questions: list[str] = []

    async def accept(dialog: Dialog) -> None:
        questions.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await row.locator('button[data-action="drain"]').click()
    await expect(row).to_have_attribute("data-state", "draining")
    assert questions
    assert "Drain test-node?" in questions[0]
    await expect(row.locator("button[data-action]")).to_have_count(0)
    waiting = asyncio.ensure_future(node.wait())
    gates.open("g")  # its running task finishes: the drain is done
    await asyncio.wait_for(waiting, 10)
    assert node.drained
    assert dashboard.errors == []
