"""The dashboard's schedules in a real Chromium: each with its next run, paused and resumed and
deleted from the page, the node's own runtime asked for the truth behind it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.async_api import Dialog, expect
from test_dashboard import (  # noqa: F401 - the fixtures the page tests share
    Dashboard,
    base_url,
    browser,
    chromium,
    dashboard,
    database_url,
)

from actorq.errors import ScheduleNotFound
from actorq.runtime import Runtime
from actorq.schedules import parse_schedule
from actorq.wire import iso

pytestmark = pytest.mark.browser


async def create(node: Runtime, body: dict[str, Any]) -> None:
    await node.schedules.create(parse_schedule(body, node.registry, time.time()))


async def test_schedules_show_their_next_runs_and_pause_resume_and_delete_from_the_page(
    node: Runtime,
    dashboard: Dashboard,  # noqa: F811 - the fixture imported above
) -> None:
    await create(node, {"name": "hourly-report", "cron": "0 * * * *", "timezone": "Europe/Paris",
                        "task": {"type": "echo"}})  # fmt: skip
    await create(node, {"name": "pulse", "every": 1, "task": {"type": "echo"}})
    page = dashboard.page
    rows = page.get_by_test_id("schedule-row")
    await expect(rows).to_have_count(2)

    report = page.locator('[data-testid="schedule-row"][data-name="hourly-report"]')
    await expect(report).to_contain_text("0 * * * * (Europe/Paris)")
    expected = iso((await node.schedules.get("hourly-report")).next_run_at)
    await expect(report.locator('[data-field="next"]')).to_have_attribute("title", str(expected))
    pulse = page.locator('[data-testid="schedule-row"][data-name="pulse"]')
    await expect(pulse).to_contain_text("every 1 s")
    await expect(pulse.locator('[data-field="fired"]')).not_to_have_text("0", timeout=15_000)

    await pulse.locator('[data-action="pause"]').click()
    await expect(pulse).to_have_attribute("data-paused", "true")
    await expect(pulse.locator('[data-field="next"]')).to_have_text("paused")
    assert (await node.schedules.get("pulse")).paused is True

    await pulse.locator('[data-action="resume"]').click()
    await expect(pulse).to_have_attribute("data-paused", "false")
    assert (await node.schedules.get("pulse")).next_run_at is not None

    async def accept(dialog: Dialog) -> None:  # "Delete schedule ...?"
        await dialog.accept()

    page.on("dialog", accept)
    await report.locator('[data-action="delete"]').click()
    await expect(rows).to_have_count(1)
    with pytest.raises(ScheduleNotFound):
        await node.schedules.get("hourly-report")
    assert dashboard.errors == []
