"""Retention on a cluster: two real node processes on one PostgreSQL sweep the same finished
tasks at once, and each task expires exactly once."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest
from procs import Server, until

from actorq import audit
from actorq.journal import journal_from_url
from actorq.journal.base import Append, Journal, Submit
from actorq.lifecycle import claimed_event
from actorq.model import Event, EventKind, NewTask

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N = 3000  # six sweeps' worth of batches, so the two nodes' sweeps overlap


async def finished_long_ago(journal: Journal, n: int, at: float) -> list[str]:
    """``n`` succeeded tasks, finished at ``at``, written in a few large batches."""
    news = [NewTask("t", {"i": i}) for i in range(n)]
    (outcome,) = await journal.run([Submit(news, at, "setup")])
    ids = [t.id for t in outcome.unwrap()]
    worker = "setup/w0"
    for make in (
        lambda i: claimed_event(i, worker, at=at, node="setup", until=at + 60),
        lambda i: Event(EventKind.STARTED, i, at, "setup", {}, worker),
        lambda i: Event(EventKind.SUCCEEDED, i, at, "setup", {"result": None}, worker),
    ):
        for outcome in await journal.run([Append(make(i)) for i in ids]):
            outcome.unwrap()
    return ids


async def test_two_nodes_expire_each_finished_task_once(
    postgres_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    journal = journal_from_url(postgres_url)
    await journal.open()
    try:
        ids = await finished_long_ago(journal, N, time.time() - 3600)
        live = ("--database-url", postgres_url, "--retention", "30m")
        for name in ("n1", "n2"):
            servers.append(Server.command(tmp_path, "serve", name, *live))
        for server in servers:
            await server.ready()

        async def all_gone() -> bool:
            return not await journal.counts()

        await until(all_gone, 120)
        expired: collections.Counter[str] = collections.Counter()
        by_node: collections.Counter[str] = collections.Counter()
        async for event in journal.events():
            if event.kind is EventKind.EXPIRED:
                expired[event.task_id] += 1
                by_node[event.node] += 1
        assert set(expired) == set(ids)
        assert set(expired.values()) == {1}  # never twice, whichever node swept it
        assert set(by_node) <= {"n1", "n2"}
        print(f"expired by node: {dict(by_node)}")
        report = await audit.verify_projection(journal)
        assert report.matches, report
        assert report.tasks == 0
        for server in servers:  # nothing failed on either node
            assert "Traceback" not in server.log.read_text()
    finally:
        await journal.close()
