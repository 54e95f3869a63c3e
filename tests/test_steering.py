"""Handlers steer their own task (Permanent, Snooze, Cancel), from async and threaded handlers,
on both backends, through a running node and its HTTP API; each outcome is one journaled event
that a replay of the journal reproduces."""

from __future__ import annotations

import collections
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config

import actorq
import actorq.lifecycle as lifecycle
from actorq.audit import verify_projection
from actorq.http.app import make_app
from actorq.model import Event, EventKind, Task, TaskState
from actorq.runtime import Runtime
from actorq.steering import SNOOZE_MAX
from actorq.tasks import Registry, TaskContext, TaskType

K = EventKind
SNOOZE = 0.05


class Runs:
    """How many times each task's handler ran, counted from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: collections.Counter[str] = collections.Counter()

    def next(self, task_id: str) -> int:
        with self._lock:
            self._runs[task_id] += 1
            return self._runs[task_id]


def steering(payload: dict[str, Any], ctx: TaskContext, runs: Runs) -> Any:
    """What every steering handler does, by its payload's ``plan``: one step per run, the
    last step repeated (``fail``, ``snooze``, ``permanent``, ``cancel``, ``bad_snooze``,
    ``done``)."""
    plan: list[str] = payload["plan"]
    step = plan[min(runs.next(ctx.task_id), len(plan)) - 1]
    match step:
        case "fail":
            raise RuntimeError(f"planned failure at attempt {ctx.attempt}")
        case "snooze":
            raise actorq.Snooze(payload.get("seconds", SNOOZE), "not yet")
        case "permanent":
            raise actorq.Permanent("the payload can never work")
        case "cancel":
            raise actorq.Cancel("nobody wants this any more")
        case "bad_snooze":
            raise actorq.Snooze(payload["seconds"])
    return {"attempt": ctx.attempt}


def steering_registry(gates: Gates, runs: Runs) -> Registry:
    registry = make_registry(gates)
    fast = actorq.RetryPolicy(actorq.Backoff.FIXED, base=0.01, jitter=0)

    async def steer_async(payload: Any, ctx: TaskContext) -> Any:
        return steering(payload, ctx, runs)

    def steer_sync(payload: Any, ctx: TaskContext) -> Any:  # runs in a thread
        return steering(payload, ctx, runs)

    registry.add(TaskType("steer_async", steer_async, max_attempts=5, retry=fast))
    registry.add(TaskType("steer_sync", steer_sync, max_attempts=5, retry=fast))
    return registry


@pytest.fixture
async def steer_node(database_url: str, gates: Gates) -> AsyncIterator[Runtime]:
    runtime = Runtime(node_config(database_url), steering_registry(gates, Runs()))
    await runtime.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
async def http(steer_node: Runtime, aiohttp_client: Any) -> TestClient:
    client: TestClient = await aiohttp_client(make_app(steer_node))
    return client


KINDS = pytest.mark.parametrize("kind", ["steer_async", "steer_sync"])


async def run_to_end(node: Runtime, kind: str, plan: list[str], **more: Any) -> Task:
    (task,) = await node.submit([_new(kind, plan, **more)])
    return await node.wait_for(task.id, timeout=20)


def _new(kind: str, plan: list[str], **more: Any) -> actorq.model.NewTask:
    return actorq.model.NewTask(kind, {"plan": plan, **more}, max_attempts=5)


async def replay_matches(node: Runtime) -> None:
    report = await verify_projection(node.journal)
    assert report.matches, report.as_json()


def attempts_after(history: list[Event], kind: EventKind) -> list[int]:
    """The task's attempt number right after each event of ``kind``, folded from its history."""
    task: Task | None = None
    seen = []
    for event in history:
        task = lifecycle.apply(task, event)
        if event.kind is kind:
            seen.append(task.attempt)
    return seen


@KINDS
async def test_permanent_ends_the_task_dead_at_once_with_its_message(
    steer_node: Runtime, kind: str
) -> None:
    # A failed attempt first: Permanent ends it even with three attempts left.
    task = await run_to_end(steer_node, kind, ["fail", "permanent"])
    assert task.state is TaskState.DEAD
    assert (task.attempt, task.max_attempts) == (2, 5)
    assert task.error == "the payload can never work"
    history = await steer_node.history(task.id)
    last = history[-1]
    assert last.kind is K.DEAD_LETTERED
    assert last.data["reason"] == "permanent"
    assert [e.kind for e in history].count(K.FAILED) == 1
    await replay_matches(steer_node)


@KINDS
async def test_cancel_ends_the_task_cancelled_with_its_reason_in_history(
    steer_node: Runtime, kind: str
) -> None:
    task = await run_to_end(steer_node, kind, ["fail", "cancel"])
    assert task.state is TaskState.CANCELLED
    assert task.attempt == 2
    assert task.error == "RuntimeError: planned failure at attempt 1"  # the last failure's
    history = await steer_node.history(task.id)
    last = history[-1]
    assert last.kind is K.CANCELLED
    assert last.data["reason"] == "nobody wants this any more"
    assert last.data["by"] == "handler"
    await replay_matches(steer_node)


@KINDS
async def test_snooze_runs_the_task_again_later_without_spending_an_attempt(
    steer_node: Runtime, kind: str
) -> None:
    task = await run_to_end(steer_node, kind, ["fail", "snooze", "snooze", "snooze", "done"])
    assert task.state is TaskState.SUCCEEDED
    # One failed attempt and three snoozes: the run that succeeded is the second attempt.
    assert task.result == {"attempt": 2}
    assert task.attempt == 2
    history = await steer_node.history(task.id)
    snoozes = [e for e in history if e.kind is K.SNOOZED]
    assert len(snoozes) == 3
    for event in snoozes:
        assert event.data["seconds"] == SNOOZE
        assert event.data["run_at"] == pytest.approx(event.at + SNOOZE)
        assert event.data["reason"] == "not yet"
    # After each snooze the attempt is what it was before the snoozed run: 1.
    assert attempts_after(history, K.SNOOZED) == [1, 1, 1]
    # Each snoozed run waited out its snooze before its next run started.
    due = None
    for event in history:
        if event.kind is K.SNOOZED:
            due = event.data["run_at"]
        elif due is not None and (event.kind is K.STARTED or lifecycle.carries_start(event)):
            assert event.data.get("started_at", event.at) >= due
            due = None
    await replay_matches(steer_node)


@KINDS
@pytest.mark.parametrize("seconds", [0, SNOOZE])  # 0: queued again at once
async def test_more_snoozes_than_attempts_never_dead_letter_the_task(
    steer_node: Runtime, kind: str, seconds: float
) -> None:
    task = await run_to_end(steer_node, kind, ["snooze"] * 7 + ["done"], seconds=seconds)
    assert task.state is TaskState.SUCCEEDED
    assert task.result == {"attempt": 1}
    history = await steer_node.history(task.id)
    assert attempts_after(history, K.SNOOZED) == [0] * 7
    await replay_matches(steer_node)


@KINDS
@pytest.mark.parametrize("seconds", [-1, SNOOZE_MAX + 1, "soon", float("nan")])
async def test_a_bad_snooze_fails_the_attempt_saying_why(
    steer_node: Runtime, kind: str, seconds: Any
) -> None:
    task = await run_to_end(steer_node, kind, ["bad_snooze"], seconds=seconds)
    assert task.state is TaskState.DEAD
    assert task.attempt == 5  # every attempt failed: a bad snooze is the handler's bug
    assert task.error is not None
    assert "Snooze seconds must be a number from 0 to 2592000" in task.error
    await replay_matches(steer_node)


async def test_steering_answers_over_http_with_the_history_to_show(
    http: TestClient, steer_node: Runtime
) -> None:
    resp = await http.post(
        "/api/v1/tasks",
        json=[{"type": "steer_async", "payload": {"plan": ["snooze", "done"]}},
              {"type": "steer_sync", "payload": {"plan": ["permanent"]}}],
    )  # fmt: skip
    assert resp.status == 201, await resp.text()
    snoozed, dead = (t["id"] for t in (await resp.json())["tasks"])
    assert (await steer_node.wait_for(snoozed, timeout=20)).state is TaskState.SUCCEEDED
    assert (await steer_node.wait_for(dead, timeout=20)).state is TaskState.DEAD
    history = await (await http.get(f"/api/v1/tasks/{snoozed}/history")).json()
    (event,) = [e for e in history["events"] if e["kind"] == "snoozed"]
    assert event["data"]["seconds"] == SNOOZE
    assert event["data"]["run_at"].endswith("Z")  # a time, shown as ISO like every other
    shown = await (await http.get(f"/api/v1/tasks/{dead}")).json()
    assert (shown["state"], shown["error"]) == ("dead", "the payload can never work")
