"""The README's cluster shape, as real processes on one database: `actorq serve` (example types
only) beside `actorq worker --app yourjobs:app`. Tasks of the worker's type, submitted through
the serve node's API, run on the worker only and succeed; while no worker runs, one waits,
queued and shown as waiting for a handler, and runs when a worker is back.

On PostgreSQL, and on SQLite with two processes sharing one file (the worker finds new work
with its fallback poll)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from procs import Server, api, until

pytestmark = pytest.mark.slow

HANDLERS = """
from actorq import App

app = App()


@app.task(queue="jobs", max_attempts=2)
def crunch(payload):
    return payload["n"] * 2
"""


async def test_a_worker_with_its_own_types_beside_a_serve_node_runs_them_alone(
    database_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    (tmp_path / "yourjobs.py").write_text(HANDLERS)
    common = ("--database-url", database_url, "--lease-seconds", "3")
    serve = Server.command(tmp_path, "serve", "api", *common)
    servers.append(serve)
    await serve.ready()

    def worker(name: str) -> Server:
        node = Server.command(tmp_path, "worker", name, "--app", "yourjobs:app", *common)
        servers.append(node)
        return node

    async def types() -> dict[str, Any]:
        body = await api("GET", f"{serve.url}/api/v1/types")
        return {t["name"]: t for t in body["types"]}

    async def served_by(name: str) -> bool:
        crunch = (await types()).get("crunch")
        return crunch is not None and crunch["nodes"] == [name]

    async def task(task_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await api("GET", f"{serve.url}/api/v1/tasks/{task_id}")
        return found

    w1 = worker("w1")
    await until(lambda: served_by("w1"), 30)
    crunch = (await types())["crunch"]
    assert (crunch["queue"], crunch["max_attempts"]) == ("jobs", 2)
    assert "echo" in await types()

    batch = [{"type": "crunch", "payload": {"n": n}} for n in range(20)]
    submitted = (await api("POST", f"{serve.url}/api/v1/tasks", batch))["tasks"]
    for item in submitted:

        async def succeeded(task_id: str = item["id"]) -> bool:
            return bool((await task(task_id))["state"] == "succeeded")

        await until(succeeded, 30)
    for item in submitted:
        done = await task(item["id"])
        assert done["worker"].startswith("w1/"), "only the worker has the handler"
        assert (done["attempt"], done["error"]) == (1, None)
        assert done["result"] == item["payload"]["n"] * 2

    # Due in a few seconds: the worker is gone by then (a stopping node removes its record).
    later = await api(
        "POST", f"{serve.url}/api/v1/tasks", {"type": "crunch", "payload": {"n": 21}, "delay": 4}
    )
    w1.proc.send_signal(signal.SIGTERM)
    assert w1.proc.wait(30) == 0

    async def waiting() -> bool:
        stats = await api("GET", f"{serve.url}/api/v1/stats")
        return bool(stats["waiting_for_handler"] == {"crunch": 1})

    await until(waiting, 30)
    assert (await task(later["id"]))["state"] == "queued"
    assert "crunch" not in await types()

    worker("w2")

    async def ran_again() -> bool:
        return bool((await task(later["id"]))["state"] == "succeeded")

    await until(ran_again, 30)
    done = await task(later["id"])
    assert done["worker"].startswith("w2/")
    assert (done["attempt"], done["result"]) == (1, 42)
    history = await api("GET", f"{serve.url}/api/v1/tasks/{later['id']}/history")
    assert "failed" not in [e["kind"] for e in history["events"]]
