"""Logs an operator can search, from a real `actorq serve` process on both backends: JSON lines
by default when stdout is not a terminal (every line parses), a warning per failed attempt and
a debug line per task transition with the task's fields, an access line per request with the
id the response's X-Request-Id carries (and a 500's body); text on --log-format text."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from procs import Server, until

from actorq.http.app import make_app
from actorq.runtime import Runtime

TASK_FIELDS = ("task_id", "queue", "type", "attempt", "node", "worker")


def lines_of(server: Server) -> list[dict[str, Any]]:
    """Every line of the server's log, each parsed as JSON (a line that is not fails)."""
    return [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]


async def request(method: str, url: str, body: Any = None) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body) as r:
        return r.status, r.headers["X-Request-Id"], await r.json()


async def test_a_serve_process_logs_json_lines_with_task_and_request_fields(
    database_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    server = Server.command(tmp_path, "serve", "logger", "--database-url", database_url,
                            "--log-level", "DEBUG")  # fmt: skip
    servers.append(server)
    await server.ready()
    body = {"type": "fail", "queue": "q1", "max_attempts": 2,
            "retry": {"backoff": "fixed", "base": 0.05}}  # fmt: skip
    status, request_id, task = await request("POST", f"{server.url}/api/v1/tasks", body)
    assert status == 201
    assert len(request_id) == 32

    async def dead() -> bool:
        state = (await request("GET", f"{server.url}/api/v1/tasks/{task['id']}"))[2]["state"]
        return bool(state == "dead")

    await until(dead, 20)
    missing = await request("GET", f"{server.url}/api/v1/tasks/nope")
    assert missing[0] == 404

    async def flushed() -> bool:  # the access line of the last request is written
        return missing[1] in server.log.read_text()

    await until(flushed, 10)
    lines = lines_of(server)  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)

    mine = [line for line in lines if line.get("task_id") == task["id"]]
    failures = [line for line in mine if line["level"] == "WARNING"]
    assert [(f["event"], f["attempt"]) for f in failures] == [("failed", 1), ("dead_lettered", 2)]
    for line in failures:
        assert line["logger"] == "actorq.tasks"
        assert (line["queue"], line["type"], line["node"]) == ("q1", "fail", "logger")
        assert line["worker"].startswith("logger/w")
        assert "this task always fails" in line["error"]
    transitions = [line for line in mine if line["level"] == "DEBUG"]
    assert [t["event"] for t in transitions][:2] == ["submitted", "claimed"]
    assert {t["event"] for t in transitions} >= {"submitted", "claimed", "failed", "enqueued",
                                                 "dead_lettered"}  # fmt: skip
    for line in transitions:
        assert set(TASK_FIELDS) <= line.keys()
        assert line["state"]

    by_id = {line["request_id"]: line for line in lines if line["logger"] == "actorq.access"}
    created = by_id[request_id]
    assert (created["method"], created["path"], created["status"]) == ("POST", "/api/v1/tasks",
                                                                       201)  # fmt: skip
    assert created["level"] == "INFO"
    assert created["duration_ms"] >= 0
    assert by_id[missing[1]]["status"] == 404


async def test_a_serve_process_logs_text_when_told(tmp_path: Path, servers: list[Server]) -> None:
    server = Server(tmp_path / "actorq.db", tmp_path, "--node", "texty", "--log-format", "text")
    servers.append(server)
    await server.ready()
    status, request_id, _ = await request("POST", f"{server.url}/api/v1/tasks",
                                          {"type": "fail", "max_attempts": 1})  # fmt: skip
    assert status == 201

    async def warned() -> bool:
        return "attempt 1 failed" in server.log.read_text()

    await until(warned, 20)
    text = server.log.read_text()
    line = next(li for li in text.splitlines() if "attempt 1 failed" in li)
    assert " WARNING actorq.tasks: task " in line
    assert "queue=default type=fail attempt=1 node=texty worker=texty/w" in line
    assert f"request_id={request_id}" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


async def test_a_500_carries_the_request_id_of_its_header_and_its_log_lines(
    node: Runtime, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(node)

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_get("/broken", broken)
    client: TestClient = await aiohttp_client(app)
    with caplog.at_level(logging.INFO, logger="actorq"):
        resp = await client.get("/broken")
        body = await resp.json()
        ok = await client.get("/health")
    assert resp.status == 500
    request_id = resp.headers["X-Request-Id"]
    assert body["error"]["request_id"] == request_id
    records = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert {r.name for r in records} == {"actorq.http", "actorq.access"}
    access = next(r for r in records if r.name == "actorq.access")
    assert (access.status, access.path) == (500, "/broken")  # type: ignore[attr-defined]
    assert ok.headers["X-Request-Id"] != request_id  # every response has its own
