"""Schedules (recurring tasks) on a running node, on both backends: the API and its refusals,
firing every second, misfires after downtime, declarations of the App, the journal replay.

Answers are checked against openapi.json as they come (``check``). Downtime is real (no node
runs) while the clock the nodes read is moved ahead, so missed ticks take no wall time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config
from test_openapi import check

from actorq import audit
from actorq.app import App
from actorq.errors import InvalidInput
from actorq.journal import journal_from_url
from actorq.model import Task, TaskFilter
from actorq.runtime import Runtime
from actorq.schedules import parse_schedule
from actorq.wire import posix

S = "/api/v1/schedules"
ECHO = {"type": "echo", "payload": {"hello": "world"}}


async def scheduled_tasks(runtime: Runtime, name: str) -> list[Task]:
    """The tasks schedule ``name`` enqueued, in tick order."""
    page = await runtime.list_tasks(TaskFilter(type=None), 500, None)
    mine = [t for t in page.tasks if t.metadata.get("schedule") == name]
    return sorted(mine, key=lambda t: posix(t.metadata["tick"]))


async def until_tasks(runtime: Runtime, name: str, n: int, timeout: float = 15.0) -> list[Task]:
    """Await ``n`` tasks of schedule ``name`` (they arrive on the node's own ticks)."""
    async with runtime.live_events() as feed, asyncio.timeout(timeout):
        while len(found := await scheduled_tasks(runtime, name)) < n:
            await feed.get()
    return found


def ticks_of(tasks: list[Task]) -> list[float]:
    return [posix(t.metadata["tick"]) for t in tasks]


# -- the API ------------------------------------------------------------------------------


async def test_a_schedule_is_created_shown_changed_paused_resumed_and_deleted(
    client: TestClient,
) -> None:
    body = {"name": "report", "cron": "*/5 * * * *", "timezone": "Europe/Paris", "task": ECHO}
    created = await check(await client.post(S, json=body), S, 201)
    assert created["cron"] == "*/5 * * * *"
    assert created["timezone"] == "Europe/Paris"
    assert created["task"] == {**ECHO, "queue": "default", "priority": 0, "max_attempts": 3,
                               "timeout": None}  # fmt: skip
    assert created["misfire"] == "skip"
    assert created["paused"] is False
    assert created["last_run_at"] is None
    next_run = posix(created["next_run_at"])
    assert next_run > time.time()
    assert round(next_run) % 300 == 0  # on a five-minute boundary (Paris is whole hours off)

    one = f"{S}/report"
    assert await check(await client.get(one), f"{S}/{{name}}", 200) == created
    listed = await check(await client.get(S), S, 200)
    assert [s["name"] for s in listed["schedules"]] == ["report"]

    changed = await check(await client.patch(one, json={"every": 60}), f"{S}/{{name}}", 200)
    assert (changed["cron"], changed["every"]) == (None, 60.0)
    assert 0 < posix(changed["next_run_at"]) - time.time() <= 60.5

    paused = await check(await client.post(one + "/pause"), f"{S}/{{name}}/pause", 200)
    assert paused["paused"] is True
    assert paused["next_run_at"] is None
    resumed = await check(await client.post(one + "/resume"), f"{S}/{{name}}/resume", 200)
    assert resumed["paused"] is False
    assert resumed["next_run_at"] is not None

    deleted = await check(await client.delete(one), f"{S}/{{name}}", 200)
    assert deleted["name"] == "report"
    await check(await client.get(one), f"{S}/{{name}}", 404, "schedule_not_found")
    history = await check(await client.get(one + "/history"), f"{S}/{{name}}/history", 200)
    kinds = [e["kind"] for e in history["events"]]
    assert kinds == ["schedule_saved"] * 4 + ["schedule_deleted"]
    assert history["events"][1]["data"]["every"] == 60.0
    as_task = await client.get("/api/v1/tasks/schedule:report/history")  # not a task's
    await check(as_task, "/api/v1/tasks/{id}/history", 404, "task_not_found")


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        ({"name": "x", "cron": "61 * * * *", "task": ECHO}, 400, "invalid_input", "cron"),
        ({"name": "x", "cron": "* * * * * *", "task": ECHO}, 400, "invalid_input", "five"),
        ({"name": "x", "cron": "bad", "task": ECHO}, 400, "invalid_input", "cron"),
        ({"name": "x", "cron": "0 0 30 2 *", "task": ECHO}, 400, "invalid_input", "30 February"),
        ({"name": "x", "every": 0, "task": ECHO}, 400, "invalid_input", "every"),
        ({"name": "x", "every": -5, "task": ECHO}, 400, "invalid_input", "every"),
        ({"name": "x", "every": True, "task": ECHO}, 400, "invalid_input", "every"),
        ({"name": "x", "every": 5, "cron": "* * * * *", "task": ECHO}, 400, "invalid_input",
         "not both"),
        ({"name": "x", "task": ECHO}, 400, "invalid_input", "'cron'"),
        ({"name": "x", "every": 5, "timezone": "Mars/Olympus", "task": ECHO}, 400,
         "invalid_input", "timezone"),
        ({"name": "x", "every": 5, "timezone": "../etc/passwd", "task": ECHO}, 400,
         "invalid_input", "timezone"),
        ({"name": "x", "every": 5, "misfire": "later", "task": ECHO}, 400, "invalid_input",
         "misfire"),
        ({"name": "x", "every": 5, "paused": "yes", "task": ECHO}, 400, "invalid_input", "paused"),
        ({"name": "x", "every": 5}, 400, "invalid_input", "task"),
        ({"name": "x", "every": 5, "task": {"type": "nope"}}, 422, "unknown_task_type", "nope"),
        ({"name": "x", "every": 5, "task": {"type": "echo", "delay": 3}}, 400, "invalid_input",
         "delay"),
        ({"name": "x", "every": 5, "task": {"type": "echo", "priority": "high"}}, 400,
         "invalid_input", "priority"),
        ({"name": "no spaces", "every": 5, "task": ECHO}, 400, "invalid_input", "name"),
        ({"every": 5, "task": ECHO}, 400, "invalid_input", "name"),
        ({"name": "x", "every": 5, "task": ECHO, "when": "now"}, 400, "invalid_input", "when"),
        ([], 400, "invalid_input", "object"),
    ],
)  # fmt: skip
async def test_a_bad_schedule_is_refused_saying_why(
    client: TestClient, body: Any, status: int, code: str, words: str
) -> None:
    error = await check(await client.post(S, json=body), S, status, code)
    assert words in error["error"]["message"]
    assert (await check(await client.get(S), S, 200))["schedules"] == []


async def test_names_are_unique_and_unknown_names_are_404(client: TestClient) -> None:
    body = {"name": "once", "every": 30, "task": ECHO}
    await check(await client.post(S, json=body), S, 201)
    error = await check(await client.post(S, json=body), S, 409, "schedule_exists")
    assert "once" in error["error"]["message"]
    one = f"{S}/{{name}}"
    for method in ("get", "patch", "delete"):
        resp = await client.request(method, f"{S}/ghost", json={"paused": True})
        await check(resp, one, 404, "schedule_not_found")
    await check(await client.post(f"{S}/ghost/pause"), one + "/pause", 404, "schedule_not_found")
    bad = await client.patch(f"{S}/once", json={"every": 0})
    await check(bad, one, 400, "invalid_input")
    renamed = await client.patch(f"{S}/once", json={"name": "twice"})
    await check(renamed, one, 400, "invalid_input")
    assert (await check(await client.get(f"{S}/once"), one, 200))["every"] == 30.0


# -- firing --------------------------------------------------------------------------------


async def test_every_second_each_tick_enqueues_one_task_carrying_the_schedule_and_tick(
    node: Runtime, client: TestClient
) -> None:
    body = {"name": "pulse", "every": 1, "task": {"type": "echo", "payload": {"n": 1}}}
    created = await check(await client.post(S, json=body), S, 201)
    tasks = await until_tasks(node, "pulse", 3)
    ticks = ticks_of(tasks)
    assert ticks[0] == posix(created["next_run_at"])
    assert [round(b - a, 6) for a, b in itertools.pairwise(ticks)] == [1.0] * (len(ticks) - 1)
    for task in tasks:
        assert task.type == "echo"
        assert task.payload == {"n": 1}
        assert task.created_at >= posix(task.metadata["tick"])
    done = await node.wait_for(tasks[0].id, timeout=10)
    assert done.result == {"n": 1}
    shown = await check(await client.get(f"{S}/pulse"), f"{S}/{{name}}", 200)
    assert shown["fired"] >= 3
    assert shown["last_run_at"] is not None
    metrics = await (await client.get("/metrics")).text()
    assert 'actorq_schedule_firings_total{schedule="pulse"}' in metrics


class Offset:
    """A clock that reads the time plus a shift the test moves: nodes' downtime without the
    wait."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


@pytest.fixture
async def offset_node(database_url: str) -> AsyncIterator[tuple[Offset, list[Runtime]]]:
    """A clock and the nodes a test started on it (at most one at a time), stopped after."""
    clock = Offset()
    started: list[Runtime] = []
    yield clock, started
    for runtime in started:
        await runtime.stop()


async def start_on(database_url: str, clock: Offset) -> Runtime:
    runtime = Runtime(node_config(database_url, poll_seconds=0.2), make_registry(Gates()),
                      clock=clock)  # fmt: skip
    await runtime.start()
    return runtime


@pytest.mark.parametrize("misfire", ["skip", "run_once"])
async def test_after_downtime_misfire_skips_the_missed_ticks_or_runs_once_for_them(
    database_url: str, offset_node: tuple[Offset, list[Runtime]], misfire: str
) -> None:
    clock, started = offset_node
    first = await start_on(database_url, clock)
    started.append(first)
    body = {"name": "beat", "every": 1, "misfire": misfire, "task": ECHO}
    await first.schedules.create(parse_schedule(body, first.registry, clock()))
    await until_tasks(first, "beat", 2)
    await first.stop()
    started.clear()

    down = clock()
    clock.shift += 10.0  # ten seconds pass with no node running: their ticks are missed
    second = await start_on(database_url, clock)
    started.append(second)
    up = clock()

    async def since_down() -> list[Task]:
        return [
            t for t in await scheduled_tasks(second, "beat") if posix(t.metadata["tick"]) > down
        ]

    async with second.live_events() as feed, asyncio.timeout(15):
        while len(await since_down()) < 3:
            await feed.get()
    everything = await scheduled_tasks(second, "beat")
    after = await since_down()
    ticks = ticks_of(everything)
    assert ticks == sorted(set(ticks))  # never two tasks for one tick
    assert all(abs((t - ticks[0]) - round(t - ticks[0])) < 1e-6 for t in ticks)  # on the grid
    missed = [t for t in after if "missed_ticks" in t.metadata]
    if misfire == "skip":
        assert missed == []
        assert all(posix(t.metadata["tick"]) > up for t in after)  # none for the downtime
    else:
        (once,) = missed  # one task for all of them
        assert once.metadata["missed_ticks"] >= 8
        assert once is after[0]
        assert all(posix(t.metadata["tick"]) > up for t in after[1:])


# -- the App's declarations and the journal -------------------------------------------------


def periodic_app(database_url: str, every: float, calls: list[Any]) -> App:
    app = App(database_url, node="app-node", poll_seconds=0.2, concurrency=2)

    @app.periodic(every=every, name="sweep", payload={"deep": True})
    async def sweep(payload: Any) -> None:
        calls.append(payload)

    return app


async def test_the_app_declares_its_periodic_tasks_once_and_again_when_changed(
    database_url: str,
) -> None:
    calls: list[Any] = []
    app = periodic_app(database_url, 1, calls)
    runtime = await app.start()
    try:
        tasks = await until_tasks(runtime, "sweep", 1)
        await runtime.wait_for(tasks[0].id, timeout=10)
        assert calls[0] == {"deep": True}
        assert tasks[0].type == "sweep"
    finally:
        await app.stop()

    async def saves() -> int:
        journal = journal_from_url(database_url)
        await journal.open()
        try:
            history = await journal.history("schedule:sweep")
        finally:
            await journal.close()
        return sum(1 for e in history if e.kind == "schedule_saved")

    assert await saves() == 1
    same = periodic_app(database_url, 1, calls)
    await same.start()
    await same.stop()
    assert await saves() == 1  # as declared: nothing journaled
    changed = periodic_app(database_url, 2, calls)
    runtime = await changed.start()
    try:
        assert (await runtime.schedules.get("sweep")).every == 2.0
    finally:
        await changed.stop()
    assert await saves() == 2


async def test_replay_verify_and_rebuild_reproduce_the_schedules(
    node: Runtime, client: TestClient
) -> None:
    for body in (
        {"name": "a", "every": 1, "task": ECHO},
        {"name": "b", "cron": "0 3 * * *", "timezone": "America/New_York", "task": ECHO},
        {"name": "c", "every": 5, "task": ECHO, "paused": True},
    ):
        await check(await client.post(S, json=body), S, 201)
    await until_tasks(node, "a", 2)
    await client.patch(f"{S}/b", json={"misfire": "run_once"})
    await client.post(f"{S}/c/resume")
    await client.delete(f"{S}/c")
    live = {s.name: s for s in await node.schedules.list()}
    assert sorted(live) == ["a", "b"]

    replayed = await audit.replay_schedules(node.journal)
    assert replayed == live
    report = await audit.verify_projection(node.journal)
    assert report.matches, report
    assert report.schedules == 2
    await node.journal.replace_schedules([])  # the projection lost
    broken = await audit.verify_projection(node.journal)
    assert broken.schedules_extra == ["a", "b"]
    assert not broken.matches
    await audit.rebuild(node.journal)
    assert {s.name: s for s in await node.schedules.list()} == replayed


def test_a_periodic_handler_keeps_its_task_types_options_and_a_bad_one_fails_at_import() -> None:
    app = App("sqlite:///unused.db")

    @app.periodic(every=30, payload={"deep": False})
    @app.task("sweep", queue="maintenance", priority=3)
    async def sweep(payload: Any) -> None: ...

    (declared,) = app.registry.schedules()
    assert (declared.name, declared.every) == ("sweep", 30.0)
    assert (declared.task.type, declared.task.queue, declared.task.priority) == (
        "sweep", "maintenance", 3,
    )  # fmt: skip
    assert declared.task.payload == {"deep": False}
    with pytest.raises(InvalidInput, match="cron"):

        @app.periodic("every day at noon")
        async def noon(payload: Any) -> None: ...

    with pytest.raises(InvalidInput, match="timezone"):

        @app.periodic("0 12 * * *", timezone="Moon/Base")
        async def lunar(payload: Any) -> None: ...
