"""No input may break the service: every bad request is a JSON 4xx of its own, on both
backends, and no request (nor an old row) poisons the reads after it. Errors keep one shape,
times one format, and the event stream ends quietly for a reader that leaves or a node that
stops."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from procs import Server, until

from actorq.actors.core import ActorStopped
from actorq.audit import export
from actorq.errors import StorageError
from actorq.http.app import make_app
from actorq.model import NewTask
from actorq.runtime import Runtime

TASKS = "/api/v1/tasks"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
JSON_HEADERS = {"Content-Type": "application/json"}


async def error_of(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    """Assert a JSON error answer of this status and code; return its error object."""
    assert resp.content_type == "application/json", await resp.text()
    body = await resp.json()
    assert resp.status == status, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    error: dict[str, Any] = body["error"]
    return error


async def post_raw(client: TestClient, raw: bytes | str) -> aiohttp.ClientResponse:
    data = raw.encode() if isinstance(raw, str) else raw
    return await client.post(TASKS, data=data, headers=JSON_HEADERS)


# -- ranges ---------------------------------------------------------------------------------


async def test_delay_beyond_ten_years_is_refused_and_reads_stay_healthy(
    client: TestClient,
) -> None:
    await error_of(await client.post(TASKS, json={"type": "echo", "delay": 1e12}), 400,
                   "invalid_input")  # fmt: skip
    ok = await client.post(TASKS, json={"type": "echo", "delay": 315360000})
    assert ok.status == 201
    task = await ok.json()
    for url in (TASKS, f"{TASKS}?state=scheduled", f"{TASKS}/{task['id']}"):
        resp = await client.get(url)
        assert resp.status == 200, await resp.text()


async def test_a_stored_time_no_datetime_holds_still_renders(
    node: Runtime, client: TestClient
) -> None:
    """Rows written before submissions were checked must not make every read a 500."""
    (task,) = await node.submit([NewTask(type="echo", run_at=1e12)])
    page = await (await client.get(TASKS)).json()
    assert page["tasks"][0]["scheduled_at"] == "9999-12-31T23:59:59.999999Z"
    resp = await client.get(f"{TASKS}/{task.id}")
    assert resp.status == 200


@pytest.mark.parametrize(
    "field",
    [
        {"priority": 99999999999999999999},
        {"priority": 2**63},
        {"priority": 2**31},
        {"priority": -(2**31) - 1},
        {"priority": 1.5},
        {"priority": True},
        {"max_attempts": 1001},
        {"max_attempts": 0},
        {"timeout": 0},
        {"timeout": 31536001},
        {"delay": -1},
        {"scheduled_at": "1969-12-31T23:59:59Z"},
        {"scheduled_at": "9999-01-01T00:00:00Z"},
        {"scheduled_at": -5},
        {"queue": "a\u0000b"},
        {"queue": "tab\there"},
        {"queue": "q" * 201},
        {"type": "ec\u0000ho"},
        {"idempotency_key": "k\u0000"},
        {"payload": {"x": "\ud800"}},
        {"metadata": {"\udfff": 1}},
    ],
)
async def test_values_outside_the_documented_ranges_are_400(
    client: TestClient, field: dict[str, Any]
) -> None:
    await error_of(await client.post(TASKS, json={"type": "echo", **field}), 400,
                   "invalid_input")  # fmt: skip


async def test_integral_numbers_and_range_ends_are_accepted(client: TestClient) -> None:
    body = {"type": "echo", "priority": 5.0, "max_attempts": 271.0, "timeout": 31536000,
            "delay": 0, "idempotency_key": "tab\tis fine"}  # fmt: skip
    resp = await client.post(TASKS, json=body)
    task = await resp.json()
    assert resp.status == 201, task
    assert (task["priority"], task["max_attempts"]) == (5, 271)
    for priority in (-(2**31), 2**31 - 1):
        assert (await client.post(TASKS, json={"type": "echo", "priority": priority})).status == 201
    past = await client.post(TASKS, json={"type": "echo", "scheduled_at": "2001-01-01T00:00:00Z"})
    assert (await past.json())["state"] == "queued"  # a past time means now


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "echo", "payload": NaN}',
        '{"type": "echo", "payload": Infinity}',
        '{"type": "echo", "payload": [-Infinity]}',
        '{"type": "echo", "delay": NaN}',
        '{"type": "echo", "priority": 1e400}',
    ],
)
async def test_nan_and_infinity_are_refused(client: TestClient, raw: str) -> None:
    resp = await post_raw(client, raw)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] in {"invalid_json", "invalid_input"}


async def test_a_float_too_large_for_a_double_is_refused_in_a_payload(client: TestClient) -> None:
    await error_of(await post_raw(client, '{"type": "echo", "payload": 1e400}'), 400,
                   "invalid_input")  # fmt: skip


@pytest.mark.parametrize("depth", [1000, 100_000])
async def test_deeply_nested_json_is_400(client: TestClient, depth: int) -> None:
    raw = '{"type": "echo", "payload": ' + "[" * depth + "]" * depth + "}"
    resp = await post_raw(client, raw)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] in {"invalid_json", "invalid_input"}


async def test_payload_nesting_limit_is_64(client: TestClient) -> None:
    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value

    ok = await client.post(TASKS, json={"type": "echo", "payload": nested(64)})
    assert ok.status == 201
    await error_of(await client.post(TASKS, json={"type": "echo", "payload": nested(65)}), 400,
                   "invalid_input")  # fmt: skip


async def test_non_utf8_body_is_400(client: TestClient) -> None:
    raw = b'{"type": "echo", "payload": "\xff\xfe"}'
    await error_of(await post_raw(client, raw), 400, "invalid_json")


async def test_a_digit_string_too_long_for_int_is_400(client: TestClient) -> None:
    raw = '{"type": "echo", "priority": ' + "9" * 5000 + "}"
    await error_of(await post_raw(client, raw), 400, "invalid_json")


# -- query parameters and ids ---------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"queue": "a\u0000"},
        {"type": "\u0000"},
        {"state": "queued\u0000"},
        {"cursor": "\u0000"},
        {"cursor": "1.5~abc\u0000"},
        {"cursor": "nan~x"},
        {"cursor": "1e999~x"},
        {"cursor": "no-tilde"},
        {"cursor": "1.5~"},
        {"limit": "9" * 5000},
    ],
)
async def test_bad_query_parameters_are_400(client: TestClient, params: dict[str, str]) -> None:
    await error_of(await client.get(TASKS, params=params), 400, "invalid_input")


async def test_empty_filters_and_cursor_mean_none(client: TestClient) -> None:
    resp = await client.get(TASKS, params={"cursor": "", "queue": "", "type": "", "state": ""})
    assert resp.status == 200


@pytest.mark.parametrize("suffix", ["", "/history", "/retry"])
async def test_an_id_no_task_can_have_is_404(client: TestClient, suffix: str) -> None:
    url = f"{TASKS}/a%00b{suffix}"
    resp = await (client.post(url) if suffix == "/retry" else client.get(url))
    await error_of(resp, 404, "task_not_found")
    await error_of(await client.delete(f"{TASKS}/a%00b"), 404, "task_not_found")


# -- batches and conflicts ------------------------------------------------------------------


async def test_every_batch_error_names_its_item(client: TestClient) -> None:
    good = {"type": "echo"}
    cases = [
        ([good, {"type": "echo", "priority": 2**63}], 1, 400, "invalid_input"),
        ([good, good, "not an object"], 2, 400, "invalid_input"),
        ([{"type": "nope"}, good], 0, 422, "unknown_task_type"),
        ([{"type": "echo", "idempotency_key": "k"}, {"type": "echo", "idempotency_key": "k"}],
         1, 400, "invalid_input"),
    ]  # fmt: skip
    for body, index, status, code in cases:
        error = await error_of(await client.post(TASKS, json=body), status, code)
        assert error["index"] == index
        assert error["message"].startswith(f"task [{index}]: ")


async def test_duplicate_key_409_names_the_live_holder(client: TestClient) -> None:
    first = await (await client.post(TASKS, json={"type": "echo", "delay": 60,
                                                  "idempotency_key": "once"})).json()  # fmt: skip
    error = await error_of(
        await client.post(TASKS, json={"type": "echo", "idempotency_key": "once"}), 409,
        "duplicate_idempotency_key",
    )  # fmt: skip
    assert error["task_id"] == first["id"]
    batch = [{"type": "echo"}, {"type": "echo", "idempotency_key": "once"}]
    error = await error_of(await client.post(TASKS, json=batch), 409, "duplicate_idempotency_key")
    assert (error["task_id"], error["index"]) == (first["id"], 1)


async def test_a_bad_submission_does_not_fail_the_innocent_ones_beside_it(
    client: TestClient,
) -> None:
    good = [client.post(TASKS, json={"type": "echo", "payload": i}) for i in range(20)]
    bad = [
        client.post(TASKS, json={"type": "echo", "priority": 2**63}),
        client.post(TASKS, json={"type": "echo", "queue": "\u0000"}),
    ]
    answers = await asyncio.gather(*good, *bad)
    assert [r.status for r in answers] == [201] * 20 + [400, 400]


# -- the error shape ------------------------------------------------------------------------


async def test_aiohttp_errors_are_json_too(node: Runtime, client: TestClient) -> None:
    await error_of(await client.get("/no/such/route"), 404, "not_found")
    resp = await client.put(TASKS)
    await error_of(resp, 405, "method_not_allowed")
    assert set(resp.headers["Allow"].split(",")) >= {"GET", "POST"}
    huge = b'{"type":"echo","payload":"' + b"x" * (node.config.max_body_bytes + 1) + b'"}'
    await error_of(await client.post(TASKS, data=io.BytesIO(huge)), 413, "payload_too_large")


async def _boom(_: web.Request) -> web.Response:
    raise ZeroDivisionError("a bug")


async def _stopped(_: web.Request) -> web.Response:
    raise ActorStopped("dispatcher is stopped")


async def _slow(_: web.Request) -> web.Response:
    raise TimeoutError


async def _storage(_: web.Request) -> web.Response:
    raise StorageError('postgres: relation "secret_table" does not exist')


@pytest.fixture
async def faulty(node: Runtime, aiohttp_client: Any) -> TestClient:
    """The node's app with routes that fail the ways a handler can."""
    app = make_app(node)
    for path, handler in (("/boom", _boom), ("/stopped", _stopped), ("/slow", _slow),
                          ("/storage", _storage)):  # fmt: skip
        app.router.add_get(path, handler)
    client: TestClient = await aiohttp_client(app)
    return client


async def test_a_500_is_json_with_the_request_id_of_its_log_line(
    faulty: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="actorq.http"):
        resp = await faulty.get("/boom")
        error = await error_of(resp, 500, "internal_error")
    request_id = error["request_id"]
    assert resp.headers["X-Request-Id"] == request_id
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert request_id in record.getMessage()
    assert record.exc_info is not None


async def test_stopped_or_slow_actors_are_503_unavailable(faulty: TestClient) -> None:
    for path in ("/stopped", "/slow"):
        await error_of(await faulty.get(path), 503, "unavailable")


async def test_a_storage_error_does_not_show_the_driver_message(faulty: TestClient) -> None:
    error = await error_of(await faulty.get("/storage"), 503, "storage_error")
    assert "secret_table" not in error["message"]


# -- one time format ------------------------------------------------------------------------


def assert_times_iso(obj: dict[str, Any]) -> None:
    for key, value in obj.items():
        if key.endswith("_at") or key == "at":
            assert value is None or ISO.match(value), (key, value)


async def test_every_time_leaving_the_node_is_iso_with_microseconds(
    node: Runtime, client: TestClient
) -> None:
    stream = await client.get("/api/v1/events")
    resp = await client.post(TASKS, json={"type": "flaky_fast", "payload": {"fail_times": 1}})
    task = await resp.json()
    assert_times_iso(task)
    await node.wait_for(task["id"], timeout=15)

    shown = await (await client.get(f"{TASKS}/{task['id']}")).json()
    assert_times_iso(shown)
    assert shown["started_at"] is not None
    history = (await (await client.get(f"{TASKS}/{task['id']}/history")).json())["events"]
    failed = next(e for e in history if e["kind"] == "failed")
    assert ISO.match(failed["data"]["retry_at"])
    for event in history:
        assert_times_iso(event)
        assert_times_iso(event["data"])

    kinds: list[str] = []
    async with asyncio.timeout(10):
        while "succeeded" not in kinds:
            line = (await stream.content.readline()).decode()
            if line.startswith("data: "):
                item = json.loads(line.removeprefix("data: "))
                assert ISO.match(item["at"]), item
                if item["task_id"] == task["id"]:
                    kinds.append(item["kind"])
    stream.close()

    out = io.StringIO()
    await export(node.journal, out)
    for line in out.getvalue().splitlines():
        event = json.loads(line)
        assert_times_iso(event)
        assert_times_iso(event["data"])


# -- the event stream -----------------------------------------------------------------------


async def test_a_reader_that_hangs_up_is_not_an_error(
    node: Runtime, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        stream = await client.get("/api/v1/events")
        assert stream.status == 200
        stream.close()
        # The server learns of it when it next writes: give it events to write.
        for _ in range(3):
            task = await (await client.post(TASKS, json={"type": "echo"})).json()
            await node.wait_for(task["id"], timeout=15)

        async def unsubscribed() -> bool:  # the stream's handler ended
            return await node.live_subscribers() == 0

        await until(unsubscribed, timeout=10)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.slow
async def test_sigterm_with_an_open_event_stream_exits_promptly(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = Server(tmp_path / "actorq.db", tmp_path)
    servers.append(server)
    await server.ready()
    async with aiohttp.ClientSession() as session:
        stream = await session.get(f"{server.url}/api/v1/events")
        assert stream.status == 200
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)

        async def exited() -> bool:
            return server.proc.poll() is not None

        await until(exited, timeout=10)
        elapsed = time.monotonic() - started
        stream.close()
    assert server.proc.returncode == 0, server.log.read_text()
    assert elapsed < 10
