"""The dashboard in a real Chromium against a node whose API needs a token: it asks once,
keeps the token for the tab, opens the live feed with a stream ticket, and shows who did
what in a task's history."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from actorq.auth import Scope, new_token
from actorq.http.app import make_app
from actorq.runtime import Runtime

CHROMIUM = "/usr/bin/chromium"
expect.set_options(timeout=10_000)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/actorq.db"


@pytest.fixture
def chromium() -> str:
    """Without Chromium the test skips, except in CI, where it fails."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}", pytrace=False)
        pytest.skip(f"no Chromium at {CHROMIUM}")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        await browser.close()


async def token(node: Runtime, name: str, scope: Scope) -> str:
    made, secret = new_token(name, scope, node.clock(), "test")
    await node.journal.create_token(made)
    return secret


@pytest.mark.browser
async def test_the_page_asks_for_a_token_once_then_works_and_goes_live(
    node: Runtime, browser: Browser, aiohttp_server: Any
) -> None:
    operator = await token(node, "ops-desk", Scope.OPERATE)
    server = await aiohttp_server(make_app(node))
    context = await browser.new_context()
    page: Page = await context.new_page()
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    await page.goto(str(server.make_url("/")))

    form = page.get_by_test_id("token-form")
    await expect(form).to_be_visible()
    await expect(page.locator("#token-message")).to_contain_text("needs a token")
    await page.get_by_test_id("token-input").fill("aq_wrong")
    await page.get_by_test_id("token-submit").click()
    await expect(form).to_be_visible()  # refused: asked again
    await expect(page.locator("#token-message")).to_contain_text("unknown or revoked")
    await page.get_by_test_id("token-input").fill(operator)
    await page.get_by_test_id("token-submit").click()
    await expect(form).to_be_hidden()
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#submit-type option[value=echo]")).to_have_count(1)

    # the page's own submission is journaled as the token, and the history shows it
    await page.select_option("#submit-type", "echo")
    await page.fill("#submit-payload", '{"hi": 1}')
    await page.click("#submit-button")
    message = page.get_by_test_id("submit-message")
    await expect(message).to_have_attribute("data-kind", "ok")
    task_id = await message.get_attribute("data-task-id")
    assert task_id
    await node.wait_for(task_id, timeout=10)
    await page.locator(f'[data-testid="task-row"][data-task-id="{task_id}"]').click()
    submitted = page.locator('[data-testid="history-row"][data-kind="submitted"]')
    await expect(submitted.get_by_test_id("history-actor")).to_have_text("ops-desk")
    claimed = page.locator('[data-testid="history-row"][data-kind="claimed"]')
    await expect(claimed.get_by_test_id("history-actor")).to_have_text("test-node")

    # the token is kept for the tab: a reload asks no more
    await page.reload()
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    await expect(form).to_be_hidden()
    # the secret never went into a URL (the stream opened with a ticket)
    assert not [u for u in seen if operator in u]
    assert any("/api/v1/events?ticket=" in u for u in seen)
    await context.close()
