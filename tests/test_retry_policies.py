"""Retry policies: each backoff shape's delays, the policy a task gets (its submission's, else
its queue's, else its type's, else the node's default), fixed at submission in its submitted
event, shown by the API, and bad policies refused with 400 (naming the item of a batch)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import FAST_RETRY, Gates, make_registry, node_config

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
