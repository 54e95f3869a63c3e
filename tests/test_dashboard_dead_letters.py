"""The dashboard's dead letters in a real Chromium against a real node: retry one, purge the
ones of a queue, retry all, and the history of a purged task."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Dialog, expect
from test_dashboard import (  # noqa: F401 - the fixtures this module's tests use
    Dashboard,
    base_url,
    browser,
    chromium,
    dashboard,
    database_url,
)

from actorq.errors import TaskPurged
from actorq.model import EventKind, NewTask, TaskState
from actorq.runtime import Runtime


@pytest.mark.browser
async def test_dead_letters_retry_one_purge_a_queue_retry_all_and_show_a_purged_history(
    node: Runtime,
    dashboard: Dashboard,  # noqa: F811 - the fixture imported above
) -> None:
    page = dashboard.page
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    news = [NewTask("fail_fast", payload=f"boom {i}", queue=q, max_attempts=1)
            for i, q in enumerate(["a", "a", "b"])]  # fmt: skip
    tasks = await node.submit(news)
    for task in tasks:
        assert (await node.wait_for(task.id, timeout=10)).state is TaskState.DEAD
    rows = page.get_by_test_id("dead-row")
    await expect(rows).to_have_count(3)  # the live feed told the page
    first = page.locator(f'[data-testid="dead-row"][data-task-id="{tasks[0].id}"]')
    await expect(first.locator('[data-field="error"]')).to_have_text("ValueError: boom 0")
    await expect(first.locator("td").nth(3)).to_have_text("1/1")

    # Retry one: it runs again (and fails again, with a fresh budget of one attempt).
    await first.locator('button[data-action="retry"]').click()
    message = page.get_by_test_id("dead-message")
    await expect(message).to_have_text("retried 1 task")
    history = await node.history(tasks[0].id)
    retried = [e for e in history if e.kind is EventKind.RETRIED]
    assert [e.data["by"] for e in retried] == ["api:127.0.0.1"]
    assert (await node.wait_for(tasks[0].id, timeout=10)).state is TaskState.DEAD

    # Purge the dead letters of queue "a", after saying yes to the page's question.
    questions: list[str] = []

    async def accept(dialog: Dialog) -> None:
        questions.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await page.fill("#dead-queue", "a")
    await page.click("#dead-refresh")
    await expect(rows).to_have_count(2)
    await page.click("#dead-purge-all")
    await expect(message).to_have_text("purged 2 dead letter(s)")
    assert questions
    assert "matching the filters" in questions[0]
    await expect(rows).to_have_count(0)
    for task in tasks[:2]:
        with pytest.raises(TaskPurged):
            await node.get(task.id)

    # A purged task's history is still there to read, from the live feed's link.
    link = page.locator(
        f'[data-testid="feed-item"][data-kind="purged"][data-task-id="{tasks[1].id}"] button'
    )
    await link.click()
    detail = page.get_by_test_id("task-detail")
    await expect(detail).to_have_attribute("data-state", "purged")
    await expect(page.get_by_test_id("detail-error")).to_contain_text("purged")
    kinds = page.locator('[data-testid="history-row"]')
    await expect(kinds.last).to_have_attribute("data-kind", "purged")
    await expect(kinds.first).to_have_attribute("data-kind", "submitted")
    await expect(page.locator("#task-retry")).to_be_hidden()

    # Retry all, no filter: queue "b"'s dead letter goes back to work.
    await page.fill("#dead-queue", "")
    await page.click("#dead-refresh")
    await expect(rows).to_have_count(1)
    await page.click("#dead-retry-all")
    await expect(message).to_have_text("retried 1 dead letter(s)")
    assert (await node.wait_for(tasks[2].id, timeout=10)).state is TaskState.DEAD
    await expect(page.get_by_test_id("dead-count")).to_have_text(re.compile(r"^\(1\)$"))
    # Chromium logs every 404 it fetched: those of the purged task, which the page expects.
    assert [e for e in dashboard.errors if "404" not in e] == []
