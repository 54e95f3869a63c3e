"""The dashboard's audit trail in a real Chromium: the journal's head seal, and whether the last
`actorq journal verify` passed or where it failed."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from playwright.async_api import expect
from test_dashboard import (  # noqa: F401 - the fixtures the page tests share
    Dashboard,
    base_url,
    browser,
    chromium,
    dashboard,
    database_url,
)

from actorq.actors.sealer import seal_all
from actorq.cli import main
from actorq.journal.sqlite import path_from_url
from actorq.model import NewTask
from actorq.runtime import Runtime

pytestmark = pytest.mark.browser


async def test_the_page_shows_the_head_seal_and_the_last_verify(
    node: Runtime,
    dashboard: Dashboard,  # noqa: F811 - the fixture imported above
) -> None:
    (task,) = await node.submit([NewTask("echo", {})])
    await node.wait_for(task.id, timeout=15)
    await seal_all(node.journal, None, node.config.node)
    seal = await node.journal.seal_head()
    assert seal is not None
    page = dashboard.page
    short = seal.hash.split(":", 1)[1][:12]
    await expect(page.get_by_test_id("audit-seal")).to_contain_text(short, timeout=15_000)
    await expect(page.get_by_test_id("audit-verify")).to_have_text("never run")

    url = node.config.database_url
    argv = ["journal", "verify", "--database-url", url]
    assert await asyncio.to_thread(main, argv) == 0
    await expect(page.get_by_test_id("audit-verify")).to_have_text("passed", timeout=15_000)

    db = sqlite3.connect(path_from_url(url), isolation_level=None)
    try:  # a forger edits the first row past its trigger
        db.execute("DROP TRIGGER journal_no_update")
        db.execute("UPDATE journal SET node = 'forger' WHERE seq = 1")
    finally:
        db.close()
    assert await asyncio.to_thread(main, argv) == 1
    verdict = page.get_by_test_id("audit-verify")
    await expect(verdict).to_have_text("failed at seq 1", timeout=15_000)
    await expect(verdict).to_have_attribute("data-state", "failed")
    assert dashboard.errors == []
