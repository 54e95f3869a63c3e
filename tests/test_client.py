"""actorq.Client and actorq.SyncClient against a live node on a real port, on both backends:
every method, the error classes the answers map to, wait() and the event stream through a
server that drops their connections."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from nodes import Gates
from procs import Server, free_port

from actorq import (
    Backoff,
    BatchItemError,
    Client,
    DuplicateTask,
    Event,
    EventKind,
    InvalidInput,
    InvalidTransition,
    LiveEvent,
    RetryPolicy,
    SyncClient,
    Task,
    TaskNotFound,
    TaskState,
    UnknownTaskType,
    Unreachable,
)
from actorq.http.app import make_app
from actorq.lifecycle import carries_start
from actorq.runtime import Runtime


class LiveServer:
    """The node's HTTP app on 127.0.0.1 at a free port. It counts the event streams it has
    opened (each one subscribed by then) and can drop every open connection, as a crashed
    proxy or a network failure would."""

    def __init__(self, node: Runtime) -> None:
        self.app = make_app(node)
        self.app.on_response_prepare.append(self._prepared)
        self.runner = web.AppRunner(self.app)
        self.url = ""
        self.streams = 0
        self.authorization: list[str | None] = []
        self._opened = asyncio.Condition()

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def _prepared(self, request: web.Request, _: web.StreamResponse) -> None:
        self.authorization.append(request.headers.get("Authorization"))
        if request.path == "/api/v1/events":
            async with self._opened:
                self.streams += 1
                self._opened.notify_all()

    async def stream_opened(self, count: int) -> None:
        """Until the server has opened ``count`` event streams in all."""
        async with asyncio.timeout(10), self._opened:
            await self._opened.wait_for(lambda: self.streams >= count)

    def drop_connections(self) -> None:
        assert self.runner.server is not None
        for connection in self.runner.server.connections:
            connection.force_close()


@pytest.fixture
async def server(node: Runtime) -> AsyncIterator[LiveServer]:
    live = LiveServer(node)
    await live.start()
    yield live
    await live.runner.cleanup()


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[Client]:
    async with Client(server.url, token="s3cret", timeout=10) as client:
        yield client


async def next_event(
    received: asyncio.Queue[LiveEvent], task_id: str, kind: EventKind
) -> LiveEvent:
    """The first event of ``kind`` for the task among those the stream delivers."""
    async with asyncio.timeout(10):
        while True:
            item = await received.get()
            if item.task_id == task_id and item.kind is kind:
                return item


# -- tasks -----------------------------------------------------------------------------------


async def test_submit_wait_get_and_history_return_typed_values(
    client: Client, server: LiveServer
) -> None:
    before = time.time()
    task = await client.submit("echo", {"msg": "hi"}, priority=5, metadata={"by": "test"})
    assert isinstance(task, Task)
    assert task.state is TaskState.QUEUED
    assert (task.type, task.priority, task.metadata) == ("echo", 5, {"by": "test"})
    assert before - 1 <= task.created_at <= time.time() + 1  # ISO back to POSIX seconds

    done = await client.wait(task.id, timeout=15)
    assert done.state is TaskState.SUCCEEDED
    assert done.result == {"msg": "hi"}
    assert done.finished_at is not None
    assert done.finished_at >= done.created_at
    assert await client.get(task.id) == done

    history = await client.history(task.id)
    assert all(isinstance(e, Event) for e in history)
    assert [e.kind for e in history] == [
        EventKind.SUBMITTED, EventKind.CLAIMED, EventKind.SUCCEEDED,
    ]  # fmt: skip
    assert history[0].at == pytest.approx(task.created_at, abs=1e-6)
    assert set(server.authorization) == {"Bearer s3cret"}


async def test_submit_many_submits_all_or_none_and_names_the_bad_item(client: Client) -> None:
    kind = f"batch-{uuid.uuid4().hex[:8]}"
    good = {"type": "echo", "payload": 1, "metadata": {"kind": kind}}
    with pytest.raises(BatchItemError) as caught:
        await client.submit_many([good, {"type": "echo", "priority": "high"}, good])
    assert caught.value.index == 1
    assert isinstance(caught.value.error, InvalidInput)
    assert "priority" in str(caught.value.error)

    tasks = await client.submit_many([{"type": "echo", "payload": i} for i in range(3)])
    assert [t.payload for t in tasks] == [0, 1, 2]
    assert all(t.state is TaskState.QUEUED for t in tasks)


async def test_submit_passes_a_retry_policy_and_a_bad_one_raises_naming_the_item(
    client: Client,
) -> None:
    policy = RetryPolicy(Backoff.LINEAR, base=2, cap=30, jitter=0.1)
    task = await client.submit("echo", 1, retry=policy)
    assert task.retry == policy
    assert (await client.get(task.id)).retry == policy
    (as_json,) = await client.submit_many([{"type": "echo", "retry": {"backoff": "fixed"}}])
    assert as_json.retry == RetryPolicy(Backoff.FIXED)
    with pytest.raises(BatchItemError) as caught:
        await client.submit_many([{"type": "echo"}, {"type": "echo", "retry": {"cap": -1}}])
    assert caught.value.index == 1
    assert isinstance(caught.value.error, InvalidInput)
    assert "field 'retry' is invalid: 'cap' must be a number from 0" in str(caught.value.error)


async def test_duplicate_idempotency_key_raises_with_the_holders_id(
    client: Client, gates: Gates
) -> None:
    held = await client.submit("gate", {"gate": "dup"}, idempotency_key="order-7")
    with pytest.raises(DuplicateTask) as caught:
        await client.submit("echo", idempotency_key="order-7")
    assert (caught.value.key, caught.value.existing_id) == ("order-7", held.id)

    with pytest.raises(BatchItemError) as in_batch:
        await client.submit_many([{"type": "echo"}, {"type": "echo", "idempotency_key": "order-7"}])
    assert in_batch.value.index == 1
    assert isinstance(in_batch.value.error, DuplicateTask)
    assert in_batch.value.error.existing_id == held.id
    gates.open("dup")


async def test_error_answers_raise_the_nodes_exception_classes(client: Client) -> None:
    with pytest.raises(TaskNotFound) as missing:
        await client.get("no-such-task")
    assert missing.value.task_id == "no-such-task"
    with pytest.raises(TaskNotFound):
        await client.history("no-such-task")
    with pytest.raises(UnknownTaskType) as unknown:
        await client.submit("no_such_type")
    assert unknown.value.task_type == "no_such_type"
    assert "no_such_type" in str(unknown.value)
    with pytest.raises(InvalidInput):
        await client.submit("echo", timeout=-1)
    with pytest.raises(InvalidInput):
        await client.submit_many([])


async def test_an_unreachable_server_raises_unreachable() -> None:
    async with Client(f"http://127.0.0.1:{free_port()}", timeout=5) as client:
        with pytest.raises(Unreachable):
            await client.health()


async def test_cancel_and_retry(client: Client) -> None:
    later = await client.submit("echo", delay=3600)
    assert later.state is TaskState.SCHEDULED
    cancelled = await client.cancel(later.id)
    assert cancelled.state is TaskState.CANCELLED
    with pytest.raises(InvalidTransition):
        await client.cancel(later.id)

    failing = await client.submit("fail_fast", "boom", max_attempts=1)
    dead = await client.wait(failing.id, timeout=15)
    assert dead.state is TaskState.DEAD
    assert dead.error is not None
    assert "boom" in dead.error
    again = await client.retry(failing.id)
    assert again.state is TaskState.QUEUED
    assert (await client.wait(failing.id, timeout=15)).state is TaskState.DEAD
    kinds = [e.kind for e in await client.history(failing.id)]
    assert EventKind.RETRIED in kinds
    starts = [e for e in await client.history(failing.id) if carries_start(e)]
    assert len(starts) + kinds.count(EventKind.STARTED) == 2


async def test_list_follows_next_cursor_page_by_page(client: Client) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    submitted = await client.submit_many(
        [{"type": "echo", "payload": i, "queue": queue, "delay": 3600} for i in range(5)]
    )
    pages = [page async for page in client.list(queue=queue, limit=2)]
    assert [len(p.tasks) for p in pages] == [2, 2, 1]
    assert pages[-1].next_cursor is None
    listed = [t.id for p in pages for t in p.tasks]
    assert sorted(listed) == sorted(t.id for t in submitted)

    only = [t async for p in client.list(state=TaskState.SCHEDULED, queue=queue) for t in p.tasks]
    assert len(only) == 5
    assert [p.tasks async for p in client.list(state="queued", queue=queue)] == [[]]


# -- the node --------------------------------------------------------------------------------


async def test_types_stats_health_and_ready(client: Client, node: Runtime) -> None:
    types = {t.name: t for t in await client.types()}
    assert types["flaky_fast"].max_attempts == 5
    assert types["echo"].nodes == ("test-node",)
    assert "tasks" in await client.stats()
    assert await client.health() == {"status": "ok", "node": "test-node"}
    assert (await client.ready())["status"] == "ready"


# -- waiting and the live stream ---------------------------------------------------------------


async def test_wait_times_out_on_a_task_that_does_not_finish(client: Client, gates: Gates) -> None:
    task = await client.submit("gate", {"gate": "never"})
    with pytest.raises(TimeoutError):
        await client.wait(task.id, timeout=0.5)
    running = await client.wait(task.id, timeout=10, states={TaskState.RUNNING})
    assert running.state is TaskState.RUNNING
    gates.open("never")


async def test_wait_outlives_a_dropped_event_stream(
    client: Client, server: LiveServer, gates: Gates
) -> None:
    task = await client.submit("gate", {"gate": "drop"})
    waiting = asyncio.create_task(client.wait(task.id, timeout=20))
    await server.stream_opened(1)
    server.drop_connections()
    gates.open("drop")
    done = await waiting
    assert done.state is TaskState.SUCCEEDED
    assert done.result == "drop"


async def test_events_resume_after_the_server_drops_the_stream(
    client: Client, server: LiveServer
) -> None:
    received: asyncio.Queue[LiveEvent] = asyncio.Queue()

    async def consume() -> None:
        async for item in client.events():
            await received.put(item)

    consumer = asyncio.create_task(consume())
    await server.stream_opened(1)
    one = await client.submit("echo", 1)
    seen = await next_event(received, one.id, EventKind.SUBMITTED)
    assert isinstance(seen, LiveEvent)
    assert seen.state is TaskState.QUEUED
    assert (seen.queue, seen.type) == ("default", "echo")
    assert seen.event.at == pytest.approx(one.created_at, abs=1e-6)

    server.drop_connections()
    await server.stream_opened(2)  # the client connected again by itself
    two = await client.submit("echo", 2)
    assert (await next_event(received, two.id, EventKind.SUCCEEDED)).state is TaskState.SUCCEEDED
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer


# -- without an event loop ---------------------------------------------------------------------


def sync_round_trip(
    server: LiveServer, gates: Gates, loop: asyncio.AbstractEventLoop
) -> tuple[Task, list[str], LiveEvent]:
    """All in a plain thread: no event loop here (the node's runs in the test's thread)."""
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    with SyncClient(server.url) as client:
        task = client.submit("sync_add", {"a": 2, "b": 3})
        done = client.wait(task.id, timeout=15)
        listed = [t.id for page in client.list(type="sync_add", limit=1) for t in page.tasks]
        with pytest.raises(TaskNotFound):
            client.get("no-such-task")
        gate = client.submit("gate", {"gate": "sync"})

        async def open_gate_once_streaming(count: int) -> None:
            await server.stream_opened(count)
            gates.open("sync")

        # wait() may have opened a stream of its own: the gate opens on the next one.
        asyncio.run_coroutine_threadsafe(open_gate_once_streaming(server.streams + 1), loop)
        for item in client.events():
            if item.task_id == gate.id and item.state is TaskState.SUCCEEDED:
                return done, listed, item
    raise AssertionError("the event stream ended")


async def test_sync_client_works_from_a_thread_without_a_loop(
    server: LiveServer, gates: Gates
) -> None:
    loop = asyncio.get_running_loop()
    done, listed, event = await asyncio.wait_for(
        asyncio.to_thread(sync_round_trip, server, gates, loop), 30
    )
    assert done.state is TaskState.SUCCEEDED
    assert done.result == 5
    assert listed == [done.id]
    assert event.kind is EventKind.SUCCEEDED
    assert not [t for t in threading.enumerate() if t.name == "actorq-client"]


# -- the example, as a user runs it ------------------------------------------------------------

EXAMPLE = Path(__file__).parent.parent / "examples" / "client.py"


@pytest.mark.slow
async def test_example_client_runs_against_a_real_actorq_serve(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = Server(tmp_path / "actorq.db", tmp_path)
    servers.append(server)
    await server.ready()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), server.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert (
        "succeeded after 1 attempt(s), result: {'greeting': 'hello from another process'}" in text
    )
    assert "cancel refused" in text
