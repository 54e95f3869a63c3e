"""The dashboard at ``/`` in a real Chromium, against a real node serving on a TCP port.

Each test drives the page as a person would (fill the form, click a row, press Cancel) and
waits for what the page shows with Playwright's auto-waiting assertions; the node's own
runtime is asked when a test needs the truth behind the page.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright, expect

from actorq.http.app import make_app
from actorq.model import EventKind, NewTask, TaskState
from actorq.retry import Backoff, RetryPolicy
from actorq.runtime import Runtime

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APP_JS = Path(__file__).parent.parent / "actorq" / "http" / "static" / "app.js"
MARKUP = "<img src=x onerror=window.__xss=1>"

expect.set_options(timeout=10_000)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The page does not care which journal is behind the API: SQLite only."""
    return f"sqlite:///{tmp_path}/actorq.db"


@pytest.fixture
async def base_url(node: Runtime, aiohttp_server: Any) -> str:
    server = await aiohttp_server(make_app(node))
    return str(server.make_url("/"))


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium; without it the browser tests skip, except in CI, where they fail."""
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (Debian's package 'chromium')"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


class Dashboard:
    """The page, and every console error and uncaught exception it had."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def row(self, task_id: str) -> Any:
        return self.page.locator(f'[data-testid="task-row"][data-task-id="{task_id}"]')

    async def submit(self, type_: str, payload: str, **fields: str) -> str:
        """Fill and send the submit form; the new task's id, once the page confirms it."""
        page = self.page
        await page.select_option("#submit-type", type_)
        await page.fill("#submit-payload", payload)
        for name, value in fields.items():
            await page.fill(f"#submit-{name.replace('_', '-')}", value)
        await page.click("#submit-button")
        message = page.get_by_test_id("submit-message")
        await expect(message).to_have_attribute("data-kind", "ok")
        task_id = await message.get_attribute("data-task-id")
        assert task_id
        return task_id


@pytest.fixture
async def dashboard(browser: Browser, base_url: str) -> AsyncIterator[Dashboard]:
    context = await browser.new_context()
    dash = Dashboard(await context.new_page())
    await dash.page.goto(base_url)
    yield dash
    await context.close()


def test_the_page_listens_for_every_event_kind() -> None:
    """EventSource delivers only the named events it listens for; a kind the page does not
    know would silently never reach the feed."""
    found = re.search(r"const EVENT_KINDS = \[(.*?)\];", APP_JS.read_text(), re.DOTALL)
    assert found, "app.js no longer declares EVENT_KINDS"
    listed = re.findall(r'"([a-z_]+)"', found.group(1))
    # The feed carries tasks' events; queues' and schedules' (control events) are not in it.
    task_kinds = [k.value for k in EventKind if not k.value.startswith(("queue_", "schedule_"))]
    assert sorted(listed) == sorted(task_kinds)


@pytest.mark.browser
async def test_page_loads_goes_live_and_shows_stats_without_console_errors(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#node-name")).to_have_text("test-node")
    await expect(page.get_by_test_id("count-succeeded")).to_have_text("0")
    await expect(page.locator("#submit-type option[value=echo]")).to_have_count(1)
    await expect(page.locator("#tasks-empty")).to_be_visible()
    assert dashboard.errors == []


@pytest.mark.browser
async def test_task_submitted_from_the_form_succeeds_in_table_feed_and_stats(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    task_id = await dashboard.submit("echo", '{"n": 1}', queue="mail", priority="3")

    row = dashboard.row(task_id)
    await expect(row.locator('[data-field="state"]')).to_have_text("succeeded")
    await expect(row.locator("td")).to_have_text(
        [task_id[:8], "echo", "mail", "succeeded", "1/3", "3", re.compile(r"^\d{4}-")]
    )
    for kind in ("submitted", "claimed", "succeeded"):
        item = page.locator(
            f'[data-testid="feed-item"][data-task-id="{task_id}"][data-kind="{kind}"]'
        )
        await expect(item).to_have_count(1)
    kinds = await page.locator(f'[data-testid="feed-item"][data-task-id="{task_id}"]').evaluate_all(
        "items => items.map(i => i.dataset.kind)"
    )
    assert kinds == ["succeeded", "claimed", "submitted"]  # newest first
    # The feed's times arrive as ISO with microseconds: shown as a clock, exact in the title.
    time = page.locator(f'[data-testid="feed-item"][data-task-id="{task_id}"] .time').first
    await expect(time).to_have_text(re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{3}$"))
    await expect(time).to_have_attribute(
        "title", re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
    )
    await expect(page.get_by_test_id("count-succeeded")).to_have_text("1")
    mail = page.locator('#queues-table tr[data-queue="mail"] td')
    await expect(mail).to_have_text(["mail", "0", "0", "0", "0", "1", "0", "0"])
    await expect(page.locator("#detail-result")).to_have_text('{\n  "n": 1\n}')
    assert dashboard.errors == []


@pytest.mark.browser
async def test_opening_a_task_shows_its_history_and_retry_runs_it_again(
    node: Runtime, dashboard: Dashboard
) -> None:
    (task,) = await node.submit([NewTask("fail_fast", payload="broken", max_attempts=2)])
    assert (await node.wait_for(task.id, timeout=10)).state is TaskState.DEAD
    page = dashboard.page
    await dashboard.row(task.id).click()

    rows = page.get_by_test_id("history-row")
    attempts = ["claimed", "failed", "enqueued", "claimed", "dead_lettered"]
    await expect(rows).to_have_count(6)
    kinds = await rows.evaluate_all("rows => rows.map(r => r.dataset.kind)")
    assert kinds == ["submitted", *attempts]
    failed = page.locator('[data-testid="history-row"][data-kind="failed"] td')
    await expect(failed.nth(3)).to_have_text("test-node")
    await expect(failed.nth(4)).to_have_text(re.compile(r"^test-node/w\d+$"))
    await expect(failed.nth(5)).to_have_text("test-node")  # the actor: the node decided it
    await expect(failed.nth(6)).to_contain_text("ValueError: broken")
    await expect(page.locator("#detail-failure")).to_contain_text("ValueError: broken")
    await expect(page.locator("#task-cancel")).to_be_hidden()

    await page.click("#task-retry")
    await expect(page.locator('[data-testid="history-row"][data-kind="retried"]')).to_have_count(1)
    await expect(rows).to_have_count(12)
    kinds = await rows.evaluate_all("rows => rows.map(r => r.dataset.kind)")
    assert kinds == ["submitted", *attempts, "retried", *attempts]
    await expect(page.locator("#detail-state")).to_have_text("dead")
    assert (await node.get(task.id)).state is TaskState.DEAD


@pytest.mark.browser
async def test_the_form_sets_a_retry_policy_and_the_task_shows_it_and_its_snoozes(
    node: Runtime, dashboard: Dashboard
) -> None:
    page = dashboard.page
    await page.select_option("#submit-retry-backoff", "linear")
    payload = json.dumps({"until": time.time() + 3})  # the form takes a while
    task_id = await dashboard.submit(
        "snooze_until", payload, retry_base="2", retry_cap="60", retry_jitter="0.1"
    )
    done = await node.wait_for(task_id, timeout=10)
    assert (done.state, done.attempt, done.result) == (TaskState.SUCCEEDED, 1, 1)
    assert done.retry == RetryPolicy(Backoff.LINEAR, base=2, cap=60, jitter=0.1)

    await dashboard.row(task_id).click()
    await expect(page.locator("#detail-state")).to_have_text("succeeded")
    shown = page.locator('#detail-fields [data-field="retry"]')
    await expect(shown).to_have_text("linear · base 2 s · cap 60 s · jitter 0.1")
    snoozed = page.locator('[data-testid="history-row"][data-kind="snoozed"]')
    await expect(snoozed.first).to_be_visible()
    await expect(snoozed.first.locator("td").nth(7)).to_contain_text('"reason":"not due yet"')
    await expect(page.locator('#detail-fields [data-field="attempt"]')).to_have_text("1")
    assert dashboard.errors == []

    # A policy out of range: the server's answer says which number, nothing is submitted.
    await page.fill("#submit-retry-jitter", "3")
    await page.click("#submit-button")
    message = page.get_by_test_id("submit-message")
    await expect(message).to_have_attribute("data-kind", "error")
    await expect(message).to_have_text(
        "400 invalid_input: field 'retry' is invalid: 'jitter' must be a number from 0 to 1,"
        " got 3.0"
    )
    # The browser logs the refused request itself; the page raised nothing.
    assert all("status of 400" in e for e in dashboard.errors), dashboard.errors


@pytest.mark.browser
async def test_cancel_of_a_delayed_task_from_the_page(node: Runtime, dashboard: Dashboard) -> None:
    page = dashboard.page
    task_id = await dashboard.submit("echo", '"later"', delay="60")
    await expect(page.locator("#detail-state")).to_have_text("scheduled")
    await expect(page.locator("#task-retry")).to_be_hidden()

    await page.click("#task-cancel")
    await expect(page.locator("#detail-state")).to_have_text("cancelled")
    await expect(dashboard.row(task_id).locator('[data-field="state"]')).to_have_text("cancelled")
    await expect(page.locator("#task-cancel")).to_be_hidden()
    await expect(page.locator("#task-retry")).to_be_visible()
    assert (await node.get(task_id)).state is TaskState.CANCELLED
    assert dashboard.errors == []


@pytest.mark.browser
async def test_markup_in_payload_and_queue_name_is_shown_as_text(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    payload = json.dumps({"html": MARKUP})
    task_id = await dashboard.submit("echo", payload, queue=MARKUP)
    await expect(dashboard.row(task_id).locator('[data-field="state"]')).to_have_text("succeeded")

    await expect(page.locator("#detail-payload")).to_contain_text(MARKUP)
    await expect(page.locator("#detail-result")).to_contain_text(MARKUP)
    await expect(dashboard.row(task_id).locator("td").nth(2)).to_have_text(MARKUP)
    await expect(page.locator("#queues-table tr[data-queue] td").first).to_have_text(MARKUP)
    feed_item = page.locator(f'[data-testid="feed-item"][data-task-id="{task_id}"]').first
    await expect(feed_item).to_contain_text(MARKUP)
    assert await page.locator("img").count() == 0
    assert await page.evaluate("typeof window.__xss") == "undefined"


@pytest.mark.browser
async def test_invalid_payload_and_an_api_error_are_shown_to_the_user(
    node: Runtime, dashboard: Dashboard
) -> None:
    page = dashboard.page
    message = page.get_by_test_id("submit-message")
    before = await node.journal.head()

    await page.select_option("#submit-type", "echo")
    await page.fill("#submit-payload", "{not json")
    await page.click("#submit-button")
    await expect(message).to_have_attribute("data-kind", "error")
    await expect(message).to_contain_text("payload is not valid JSON")

    await page.fill("#submit-payload", json.dumps({"why": MARKUP}))
    await page.fill("#submit-max-attempts", "0")
    await page.click("#submit-button")
    await expect(message).to_contain_text("400 invalid_input")
    await expect(message).to_contain_text("'max_attempts' must be an integer from 1 to 1000")
    assert await node.journal.head() == before


@pytest.mark.browser
async def test_filters_and_next_page_walk_the_tasks(node: Runtime, dashboard: Dashboard) -> None:
    await node.submit([NewTask("echo", payload=i, queue="bulk", run_at=4e9) for i in range(30)])
    await node.submit([NewTask("echo", payload=i, queue="other", run_at=4e9) for i in range(2)])
    page = dashboard.page
    rows = page.get_by_test_id("task-row")

    queues = rows.locator("td:nth-child(3)")
    await page.fill("#filter-queue", "bulk")
    await page.press("#filter-queue", "Enter")
    await expect(queues).to_have_text(["bulk"] * 25)
    await expect(page.locator("#tasks-first")).to_be_disabled()
    await page.click("#tasks-next")
    await expect(rows).to_have_count(5)
    await expect(page.locator("#tasks-page")).to_have_text("page 2")
    await expect(page.locator("#tasks-next")).to_be_disabled()
    await page.click("#tasks-first")
    await expect(rows).to_have_count(25)

    await page.fill("#filter-queue", "other")
    await page.press("#filter-queue", "Enter")
    await expect(queues).to_have_text(["other"] * 2)
    await page.select_option("#filter-state", "succeeded")
    await expect(page.locator("#tasks-empty")).to_be_visible()


@pytest.mark.browser
async def test_feed_reconnects_after_the_server_drops_it_for_lagging(
    node: Runtime, dashboard: Dashboard, base_url: str
) -> None:
    """The server ends a lagging subscriber's stream with one ``lagged`` item; the page must
    connect again by itself. The first stream is answered here with just that item, and a
    reconnection delay too long for the browser's own retry to be what reconnects."""
    page = dashboard.page
    opened = 0
    reconnected = asyncio.Event()

    async def first_stream_lags(route: Route) -> None:
        nonlocal opened
        opened += 1
        if opened == 1:
            body = 'retry: 600000\nevent: lagged\ndata: {"kind": "lagged"}\n\n'
            await route.fulfill(status=200, content_type="text/event-stream", body=body)
        else:
            reconnected.set()
            await route.continue_()

    await page.route("**/api/v1/events", first_stream_lags)
    await page.goto(base_url)
    await asyncio.wait_for(reconnected.wait(), 10)
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    (task,) = await node.submit([NewTask("echo")])
    item = page.locator(f'[data-testid="feed-item"][data-task-id="{task.id}"]')
    await expect(item.first).to_be_visible()


@pytest.mark.browser
async def test_feed_resumes_after_a_reconnect_with_the_events_it_missed(
    node: Runtime, dashboard: Dashboard
) -> None:
    """Events carry their seq as id; a stream the page opens again asks for what came since
    the last one it showed: what was committed meanwhile shows, nothing twice."""
    page = dashboard.page
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    (first,) = await node.submit([NewTask("echo")])
    await node.wait_for(first.id, timeout=10)
    shown = page.locator(f'[data-testid="feed-item"][data-task-id="{first.id}"]')
    await expect(shown).to_have_count(3)  # submitted, claimed, succeeded
    await page.evaluate("feed.source.close()")  # the stream is gone
    (missed,) = await node.submit([NewTask("echo")])  # committed while nobody listens
    await node.wait_for(missed.id, timeout=10)
    await page.evaluate("connectFeed()")
    item = page.locator(f'[data-testid="feed-item"][data-task-id="{missed.id}"]')
    await expect(item).to_have_count(3)
    await expect(shown).to_have_count(3)  # none twice
    assert any("/api/v1/events?since=" in url for url in urls)
    assert dashboard.errors == []


async def test_tasks_of_a_type_no_live_node_serves_show_as_waiting_for_a_handler(
    node: Runtime, dashboard: Dashboard
) -> None:
    waiting = dashboard.page.get_by_test_id("waiting-for-handler")
    await expect(waiting).to_be_hidden()
    # Written past the API's check, as a node that has since stopped would have accepted it.
    await node.submit([NewTask("retired_type"), NewTask("retired_type")])
    await expect(waiting).to_be_visible()
    await expect(waiting.locator('tr[data-type="retired_type"] td')).to_have_text(
        ["retired_type", "2"]
    )
    assert dashboard.errors == []


@pytest.mark.browser
async def test_queue_controls_pause_resume_edit_limits_and_purge(
    node: Runtime, dashboard: Dashboard
) -> None:
    page = dashboard.page
    await node.configure_queue("mail", {"paused": True})
    await node.submit([NewTask("echo", queue="mail") for _ in range(3)])
    row = page.locator('[data-testid="queue-row"][data-queue="mail"]')
    await expect(row.get_by_test_id("queue-depth")).to_have_text("3")
    await expect(row.get_by_test_id("queue-state")).to_have_text("paused")

    await row.get_by_test_id("queue-resume").click()
    await expect(row.get_by_test_id("queue-state")).to_have_text("active")
    settings = {q.name: q for q in await node.journal.queue_settings()}
    assert settings["mail"].paused is False
    await expect(row.get_by_test_id("queue-depth")).to_have_text("0")  # they ran

    await row.get_by_test_id("queue-pause").click()
    await expect(row).to_have_attribute("data-paused", "true")
    assert {q.name: q for q in await node.journal.queue_settings()}["mail"].paused

    # limits edited in place: set, then cleared
    await row.get_by_test_id("queue-concurrency").fill("3")
    await row.get_by_test_id("queue-rate_limit").fill("5/2")
    await row.get_by_test_id("queue-max_depth").fill("40")
    await row.get_by_test_id("queue-save").click()
    await expect(row).to_have_attribute("data-saved-rate_limit", "5/2")
    mail = await node.queue("mail")
    assert (mail["concurrency"], mail["rate_limit"], mail["max_depth"]) == (
        3,
        {"limit": 5, "period": 2.0},
        40,
    )
    await row.get_by_test_id("queue-concurrency").fill("")
    await row.get_by_test_id("queue-save").click()
    await expect(row).to_have_attribute("data-saved-concurrency", "")
    assert (await node.queue("mail"))["concurrency"] is None

    # the queue's retry policy, in the CLI's short form
    await row.get_by_test_id("queue-retry").fill("fixed,base=5")
    await row.get_by_test_id("queue-save").click()
    saved = "fixed,base=5,factor=2,cap=300,jitter=0.5"
    await expect(row).to_have_attribute("data-saved-retry", saved)
    retry = (await node.queue("mail"))["retry"]
    assert (retry["backoff"], retry["base"]) == ("fixed", 5.0)
    await row.get_by_test_id("queue-retry").fill("")
    await row.get_by_test_id("queue-save").click()
    await expect(row).to_have_attribute("data-saved-retry", "")
    assert (await node.queue("mail"))["retry"] is None

    # a refused value is shown, and changes nothing
    await row.get_by_test_id("queue-concurrency").fill("0")
    await row.get_by_test_id("queue-save").click()
    message = page.get_by_test_id("queues-message")
    await expect(message).to_contain_text("concurrency must be")
    assert (await node.queue("mail"))["concurrency"] is None
    await row.get_by_test_id("queue-concurrency").fill("")  # the edit stays until corrected
    await row.get_by_test_id("queue-save").click()
    await expect(message).to_be_hidden()
    await expect(row).to_have_attribute("data-saved-max_depth", "40")

    # purge: the queued and scheduled tasks end cancelled
    tasks = await node.submit([NewTask("echo", queue="mail") for _ in range(4)])
    await expect(row.get_by_test_id("queue-depth")).to_have_text("4")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await row.get_by_test_id("queue-purge").click()
    await expect(message).to_have_text("queue mail: 4 tasks purged")
    await expect(row.get_by_test_id("queue-depth")).to_have_text("0")
    assert {(await node.get(t.id)).state for t in tasks} == {TaskState.CANCELLED}
    # the one error is the browser's note of the refused save's 400, which the page showed
    assert [e for e in dashboard.errors if "400 (Bad Request)" not in e] == []
