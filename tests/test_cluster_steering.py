"""Steering and retry policies across real node processes on one database: an `actorq serve`
node without the handlers and an `actorq worker --app` node with them. A submission through
the serve node takes the worker's type policy (from its node record) or its own, fixed in the
submitted event; the worker's handlers snooze, give up and cancel; and `actorq journal verify`
finds the journal and the projection agree."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from procs import Server, api, until

from actorq.cli import main
from actorq.wire import posix

pytestmark = pytest.mark.slow

HANDLERS = """
import actorq

app = actorq.App()
runs = {}


@app.task(max_attempts=3, retry=actorq.RetryPolicy(actorq.Backoff.FIXED, base=0.2, jitter=0))
def steered(payload, ctx):
    runs[ctx.task_id] = runs.get(ctx.task_id, 0) + 1
    step = payload[min(runs[ctx.task_id], len(payload)) - 1]
    if step == "snooze":
        raise actorq.Snooze(0.1, "later")
    if step == "fail":
        raise RuntimeError("planned")
    if step == "permanent":
        raise actorq.Permanent("never")
    if step == "cancel":
        raise actorq.Cancel("unwanted")
    return ctx.attempt
"""


async def test_policies_and_steering_hold_across_nodes(
    database_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    (tmp_path / "steerjobs.py").write_text(HANDLERS)
    common = ("--database-url", database_url, "--lease-seconds", "3")
    serve = Server.command(tmp_path, "serve", "api", *common, "--retry", "fixed,base=9")
    servers.append(serve)
    worker = Server.command(tmp_path, "worker", "w1", "--app", "steerjobs:app", *common)
    servers.append(worker)
    await serve.ready()

    async def served() -> bool:
        body = await api("GET", f"{serve.url}/api/v1/types")
        return any(t["name"] == "steered" for t in body["types"])

    await until(served, 30)
    (steered,) = [t for t in (await api("GET", f"{serve.url}/api/v1/types"))["types"]
                if t["name"] == "steered"]  # fmt: skip
    type_policy = {"backoff": "fixed", "base": 0.2, "factor": 2.0, "cap": 300.0, "jitter": 0.0}
    assert steered["retry"] == type_policy

    own = {"backoff": "linear", "base": 0.1, "factor": 2.0, "cap": 1.0, "jitter": 0.0}
    plans: list[dict[str, Any]] = [
        {"type": "steered", "payload": ["fail", "snooze", "snooze", "done"]},
        {"type": "steered", "payload": ["fail", "fail", "done"], "retry": own},
        {"type": "steered", "payload": ["permanent"]},
        {"type": "steered", "payload": ["snooze", "cancel"]},
    ]
    tasks = (await api("POST", f"{serve.url}/api/v1/tasks", plans))["tasks"]
    assert [t["retry"] for t in tasks] == [type_policy, own, type_policy, type_policy]

    async def task(task_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await api("GET", f"{serve.url}/api/v1/tasks/{task_id}")
        return found

    for item in tasks:

        async def finished(task_id: str = item["id"]) -> bool:
            return (await task(task_id))["state"] in ("succeeded", "dead", "cancelled")

        await until(finished, 30)
    snoozed, linear, gave_up, cancelled = [await task(t["id"]) for t in tasks]
    assert (snoozed["state"], snoozed["result"], snoozed["attempt"]) == ("succeeded", 2, 2)
    assert snoozed["worker"].startswith("w1/")
    assert (linear["state"], linear["result"]) == ("succeeded", 3)
    assert (gave_up["state"], gave_up["attempt"], gave_up["error"]) == ("dead", 1, "never")
    assert (cancelled["state"], cancelled["attempt"]) == ("cancelled", 1)

    async def events(task_id: str) -> list[dict[str, Any]]:
        body = await api("GET", f"{serve.url}/api/v1/tasks/{task_id}/history")
        found: list[dict[str, Any]] = body["events"]
        return found

    kinds = [e["kind"] for e in await events(snoozed["id"])]
    assert kinds.count("snoozed") == 2
    assert (await events(cancelled["id"]))[-1]["data"]["by"] == "handler"
    failed = [e for e in await events(linear["id"]) if e["kind"] == "failed"]
    delays = [posix(e["data"]["retry_at"]) - posix(e["at"]) for e in failed]
    assert delays == pytest.approx([0.1, 0.2], abs=1e-5)  # the submission's own, linear

    for server in servers:
        server.stop()
    argv = ["journal", "verify", "--database-url", database_url]
    assert await asyncio.to_thread(main, argv) == 0
