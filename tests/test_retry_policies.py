"""Retry policies: each backoff shape's delays, the policy a task gets (its submission's, else
its queue's, else its type's, else the node's default), fixed at submission in its submitted
event, shown by the API, and bad policies refused with 400 (naming the item of a batch)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import FAST_RETRY, Gates, make_registry, node_config
from procs import Server, api, until

from actorq.audit import verify_projection
from actorq.config import Config
from actorq.errors import InvalidInput
from actorq.http.app import make_app
from actorq.model import EventKind, NewTask, TaskFilter, TaskState
from actorq.retry import (
    DEFAULT,
    Backoff,
    PolicyError,
    RetryDefaults,
    RetryPolicy,
    parse_spec,
    policy_from_json,
    policy_json,
    resolve,
)
from actorq.runtime import Runtime
from actorq.tasks import TaskType

NODE_DEFAULT = "linear,base=0.02,cap=1,jitter=0"

# -- the policies on their own ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (RetryPolicy(Backoff.EXPONENTIAL, base=0.5, factor=3, cap=10, jitter=0),
         [0.5, 1.5, 4.5, 10.0, 10.0]),
        (RetryPolicy(Backoff.LINEAR, base=2, cap=7, jitter=0), [2.0, 4.0, 6.0, 7.0, 7.0]),
        (RetryPolicy(Backoff.FIXED, base=3, cap=1, jitter=0), [3.0] * 5),  # no cap for fixed
    ],
)  # fmt: skip
def test_each_backoff_shape_gives_its_delays(policy: RetryPolicy, expected: list[float]) -> None:
    rng = random.Random(1)
    assert [policy.delay(n, rng) for n in range(1, 6)] == pytest.approx(expected)


def test_jitter_draws_within_the_documented_band() -> None:
    policy = RetryPolicy(Backoff.FIXED, base=10, jitter=0.3)
    rng = random.Random(2)
    delays = [policy.delay(1, rng) for _ in range(500)]
    assert all(7.0 <= d <= 10.0 for d in delays)
    assert max(delays) - min(delays) > 2.0  # it does spread


def test_a_steep_exponential_policy_stops_at_its_cap_not_at_an_overflow() -> None:
    policy = RetryPolicy(base=1, factor=10, cap=3600, jitter=0)
    assert policy.delay(1000, random.Random(3)) == 3600.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"backoff": "zigzag"}, "'backoff' must be one of exponential, linear, fixed"),
        ({"base": -1}, "'base' must be a number from 0 to 2592000"),
        ({"cap": 2592001}, "'cap' must be a number from 0 to 2592000"),
        ({"factor": 0.5}, "'factor' must be a number from 1 to 10"),
        ({"jitter": 1.5}, "'jitter' must be a number from 0 to 1"),
        ({"base": "1"}, "'base' must be a number"),
        ({"base": True}, "'base' must be a number"),
        ({"colour": "red"}, "unknown field(s) colour"),
        ("fast", "must be a JSON object"),
    ],
)
def test_a_bad_policy_is_refused_saying_which_number(value: Any, message: str) -> None:
    with pytest.raises(PolicyError) as refused:
        policy_from_json(value)
    assert message in str(refused.value)


def test_a_policy_round_trips_through_its_json_and_its_short_form() -> None:
    policy = RetryPolicy(Backoff.LINEAR, base=2, factor=1.5, cap=60, jitter=0.1)
    assert policy_from_json(policy_json(policy)) == policy
    assert parse_spec("linear,base=2,factor=1.5,cap=60,jitter=0.1") == policy
    assert parse_spec('{"backoff": "fixed", "base": 5}') == RetryPolicy(Backoff.FIXED, base=5)
    assert policy_from_json({}) == DEFAULT
    with pytest.raises(PolicyError, match="'speed=3' is not one of"):
        parse_spec("fixed,speed=3")


def test_the_policy_is_the_submissions_then_the_queues_then_the_types_then_the_nodes() -> None:
    mine, queue, kind, node = (RetryPolicy(base=n) for n in (1, 2, 3, 4))
    assert resolve(mine, queue, kind, node) is mine
    assert resolve(None, queue, kind, node) is queue
    assert resolve(None, None, kind, node) is kind
    assert resolve(None, None, None, node) is node
    defaults = RetryDefaults(node=node, queues={"mail": queue})
    assert defaults.choose(None, "mail", kind) is queue
    assert defaults.choose(None, "other", kind) is kind
    assert defaults.choose(None, "other", None) is node


def test_a_node_default_policy_is_checked_when_configured() -> None:
    assert Config(retry=NODE_DEFAULT).retry_policy == parse_spec(NODE_DEFAULT)
    with pytest.raises(InvalidInput, match="'jitter' must be a number from 0 to 1"):
        Config(retry="fixed,jitter=3")


# -- on a running node -------------------------------------------------------------------------


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[Runtime]:
    registry = make_registry(Gates())

    async def always_fails(payload: Any) -> None:
        raise RuntimeError("no")

    registry.add(TaskType("always_fails", always_fails, max_attempts=4))  # no policy of its own
    registry.add(TaskType("fails_typed", always_fails, max_attempts=2, retry=FAST_RETRY))
    runtime = Runtime(node_config(database_url, retry=NODE_DEFAULT), registry)
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
async def http(node: Runtime, aiohttp_client: Any) -> TestClient:
    client: TestClient = await aiohttp_client(make_app(node))
    return client


async def submit(http: TestClient, body: Any) -> Any:
    resp = await http.post("/api/v1/tasks", json=body)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def delays_of(node: Runtime, task_id: str) -> list[float]:
    """The delay each failed attempt was given, from the task's history."""
    history = await node.history(task_id)
    return [e.data["retry_at"] - e.at for e in history if e.kind is EventKind.FAILED]


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        ({"backoff": "fixed", "base": 0.05, "jitter": 0}, [0.05, 0.05, 0.05]),
        ({"backoff": "linear", "base": 0.03, "cap": 0.08, "jitter": 0}, [0.03, 0.06, 0.08]),
        ({"backoff": "exponential", "base": 0.01, "factor": 3, "cap": 0.05, "jitter": 0},
         [0.01, 0.03, 0.05]),
    ],
)  # fmt: skip
async def test_a_submissions_own_policy_spaces_its_retries(
    http: TestClient, node: Runtime, retry: dict[str, Any], expected: list[float]
) -> None:
    task = await submit(http, {"type": "always_fails", "retry": retry})
    assert task["retry"] == policy_json(policy_from_json(retry))
    done = await node.wait_for(task["id"], timeout=20)
    assert (done.state, done.attempt) == (TaskState.DEAD, 4)
    assert await delays_of(node, task["id"]) == pytest.approx(expected)
    history = await node.history(task["id"])
    assert history[0].data["retry"] == task["retry"]  # fixed in the submitted event
    report = await verify_projection(node.journal)
    assert report.matches, report.as_json()


async def test_without_a_policy_of_its_own_a_task_takes_its_types_then_the_nodes(
    http: TestClient, node: Runtime
) -> None:
    typed, untyped = (await submit(http, [{"type": "fails_typed"}, {"type": "always_fails"}]))[
        "tasks"
    ]
    assert typed["retry"] == policy_json(FAST_RETRY)
    assert untyped["retry"] == policy_json(parse_spec(NODE_DEFAULT))
    await node.wait_for(untyped["id"], timeout=20)
    assert await delays_of(node, untyped["id"]) == pytest.approx([0.02, 0.04, 0.06])
    types = {t["name"]: t for t in (await (await http.get("/api/v1/types")).json())["types"]}
    assert types["fails_typed"]["retry"] == policy_json(FAST_RETRY)
    assert types["always_fails"]["retry"] is None
    # A task submitted in Python without a policy gets it chosen at submission too.
    (direct,) = await node.submit([NewTask("fails_typed")])
    assert direct.retry == FAST_RETRY


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ({"backoff": "zigzag"}, "field 'retry' is invalid: 'backoff' must be one of"),
        ({"base": -1}, "field 'retry' is invalid: 'base' must be a number from 0 to 2592000"),
        ({"jitter": 2}, "field 'retry' is invalid: 'jitter' must be a number from 0 to 1"),
        ({"factor": 11}, "field 'retry' is invalid: 'factor' must be a number from 1 to 10"),
        ({"base": "soon"}, "field 'retry' is invalid: 'base' must be a number"),
        ({"speed": 3}, "field 'retry' is invalid: unknown field(s) speed"),
        ("fast", "field 'retry' is invalid: must be a JSON object"),
    ],
)
async def test_a_bad_policy_is_a_400_naming_the_field_and_the_batch_item(
    http: TestClient, node: Runtime, retry: Any, message: str
) -> None:
    resp = await http.post("/api/v1/tasks", json={"type": "always_fails", "retry": retry})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_input"
    assert error["message"].startswith(message), error["message"]
    batch = [{"type": "record"}, {"type": "record", "retry": {"base": 1}},
             {"type": "always_fails", "retry": retry}]  # fmt: skip
    resp = await http.post("/api/v1/tasks", json=batch)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["index"] == 2
    assert error["message"].startswith(f"task [2]: {message}"), error["message"]
    page = await node.list_tasks(TaskFilter(), 10, None)
    assert page.tasks == []  # the batch is refused whole


# -- a queue's policy -----------------------------------------------------------------------

QUEUE_POLICY = {"backoff": "fixed", "base": 0.03, "factor": 2.0, "cap": 300.0, "jitter": 0.0}


async def patch_queue(http: TestClient, name: str, body: Any) -> Any:
    resp = await http.patch(f"/api/v1/queues/{name}", json=body)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_queues_policy_comes_after_the_submissions_and_before_the_types(
    http: TestClient, node: Runtime
) -> None:
    shown = await patch_queue(http, "slow", {"retry": QUEUE_POLICY})
    assert shown["retry"] == QUEUE_POLICY
    tasks = (
        await submit(
            http,
            [
                {"type": "always_fails", "queue": "slow"},  # no policy of its own or its type's
                {"type": "fails_typed", "queue": "slow"},  # its type's loses to its queue's
                {"type": "fails_typed", "queue": "slow", "retry": {"backoff": "linear"}},
                {"type": "fails_typed"},  # another queue: its type's
            ],
        )
    )["tasks"]
    assert [t["retry"] for t in tasks] == [
        QUEUE_POLICY,
        QUEUE_POLICY,
        policy_json(policy_from_json({"backoff": "linear"})),
        policy_json(FAST_RETRY),
    ]
    done = await node.wait_for(tasks[0]["id"], timeout=20)
    assert (done.state, done.attempt) == (TaskState.DEAD, 4)
    assert await delays_of(node, tasks[0]["id"]) == pytest.approx([0.03, 0.03, 0.03])
    (direct,) = await node.submit([NewTask("always_fails", queue="slow")])  # in Python too
    assert direct.retry == policy_from_json(QUEUE_POLICY)

    # cleared: the type's and the node's apply again
    assert (await patch_queue(http, "slow", {"retry": None}))["retry"] is None
    typed, untyped = (
        await submit(
            http,
            [{"type": "fails_typed", "queue": "slow"}, {"type": "always_fails", "queue": "slow"}],
        )
    )["tasks"]
    assert typed["retry"] == policy_json(FAST_RETRY)
    assert untyped["retry"] == policy_json(parse_spec(NODE_DEFAULT))
    # the queue's policy is journaled like its other settings: a replay finds the same
    for task_id in [t["id"] for t in (*tasks, typed, untyped)] + [direct.id]:
        await node.wait_for(task_id, timeout=20)
    report = await verify_projection(node.journal)
    assert report.matches, report.as_json()
    events = [e for e in await node.journal.history("queue:slow")]
    assert [e.data.get("retry", "-") for e in events] == [QUEUE_POLICY, None]


@pytest.mark.parametrize(
    ("retry", "message"),
    [
        ({"backoff": "zigzag"}, "retry is invalid: 'backoff' must be one of"),
        ({"jitter": 2}, "retry is invalid: 'jitter' must be a number from 0 to 1"),
        ({"speed": 3}, "retry is invalid: unknown field(s) speed"),
        ("fast", "retry is invalid: must be a JSON object"),
    ],
)
async def test_a_bad_queue_policy_is_a_400_and_changes_nothing(
    http: TestClient, node: Runtime, retry: Any, message: str
) -> None:
    await patch_queue(http, "slow", {"retry": QUEUE_POLICY})
    resp = await http.patch("/api/v1/queues/slow", json={"retry": retry, "concurrency": 2})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["code"], error["message"][: len(message)]) == ("invalid_input", message)
    queue = await node.queue("slow")
    assert (queue["retry"], queue["concurrency"]) == (QUEUE_POLICY, None)


async def test_a_queues_policy_reaches_an_app_and_the_cli_on_the_database(
    http: TestClient, node: Runtime, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_cli_ops import actorq

    from actorq.app import App

    await actorq(capsys, "queues", "set", "slow", "--retry", "fixed,base=0.03,jitter=0",
                 "--database-url", database_url)  # fmt: skip
    assert (await node.queue("slow"))["retry"] == QUEUE_POLICY
    bad = await actorq(capsys, "queues", "set", "slow", "--retry", "zigzag",
                       "--database-url", database_url, code=2)  # fmt: skip
    assert "--retry 'zigzag'" in bad
    async with App(database_url=database_url) as app:  # no node: it reads the queue's policy
        task = await app.enqueue("always_fails", queue="slow")
    assert task.retry == policy_from_json(QUEUE_POLICY)
    shown = await actorq(capsys, "submit", "always_fails", "--queue", "slow",
                         "--database-url", database_url)  # fmt: skip
    assert shown["retry"] == QUEUE_POLICY
    # the running node heard of the CLI's change (a foreign commit or a notice) too
    resp = await http.post("/api/v1/tasks", json={"type": "always_fails", "queue": "slow"})
    assert (await resp.json())["retry"] == QUEUE_POLICY


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_queues_policy_set_on_one_node_is_taken_by_another_at_once(
    postgres_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    """Two `actorq serve` processes on one PostgreSQL: B took a submission of the queue before
    (so it has read the queues' policies), A changes the queue's policy, and B's very next
    submissions take the new one as soon as A's notice reaches B (no restart, no poll)."""
    a, b = (Server.command(tmp_path, "serve", name, "--database-url", postgres_url)
            for name in ("a", "b"))  # fmt: skip
    servers.extend([a, b])
    await a.ready()
    await b.ready()
    before = await api("POST", f"{b.url}/api/v1/tasks", {"type": "echo", "queue": "slow"})
    assert before["retry"] != QUEUE_POLICY
    await api("PATCH", f"{a.url}/api/v1/queues/slow", {"retry": QUEUE_POLICY})
    seen: list[Any] = []

    async def taken() -> bool:
        task = await api("POST", f"{b.url}/api/v1/tasks", {"type": "echo", "queue": "slow"})
        seen.append(task["retry"])
        return bool(task["retry"] == QUEUE_POLICY)

    started = time.monotonic()
    await until(taken, 5)
    print(f"B took A's queue policy after {time.monotonic() - started:.3f} s, {len(seen)} tries")
    assert (await api("GET", f"{b.url}/api/v1/queues/slow"))["retry"] == QUEUE_POLICY
