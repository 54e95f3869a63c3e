"""A client of the REST API for programs outside the node: ``Client`` (async, on aiohttp);
``actorq.sync_client.SyncClient`` has the same methods for callers without an event loop.

It covers what the API serves today: tasks (submit one or a batch, get, wait, list, history,
cancel, retry), queues, schedules, dead letters (list, retry, purge), the task types,
statistics, health, readiness and the live event stream. Nodes have no routes on the server
yet; their methods come with those routes. Answers are model values (``Task``,
``Event``, ``LiveEvent``, decoded by ``actorq.wire``); an error answer raises the class the
node raised (``actorq.errors``), and a server that cannot be reached raises ``Unreachable``,
an ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import urllib.parse
from collections.abc import (
    AsyncIterator,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, TypedDict, Unpack

import aiohttp

from actorq.errors import ActorqError, Unavailable, Unreachable
from actorq.model import FINISHED_STATES, Event, Page, Schedule, Task, TaskState
from actorq.retry import RetryPolicy, policy_json
from actorq.wire import (
    LiveEvent,
    TaskTypeInfo,
    error_from_json,
    event_from_json,
    live_event_from_json,
    schedule_from_json,
    sse_messages,
    task_from_json,
    task_type_from_json,
)

log = logging.getLogger("actorq.client")

_TASKS = "/api/v1/tasks"
_SCHEDULES = "/api/v1/schedules"
_EVENTS = "/api/v1/events"
_DEAD = "/api/v1/dead-letters"
# The server sends a keepalive after 15 s of silence: a stream silent for three is gone.
_STREAM_IDLE = 45.0
# Pauses between attempts to reach a dropped stream again: doubling from the first to the cap.
_FIRST_PAUSE = 0.2
_MAX_PAUSE = 5.0
# What a dropped connection raises, while reading an answer or an open stream.
_DROPPED = (Unavailable, aiohttp.ClientError, TimeoutError)


class TaskFields(TypedDict, total=False):
    """What a submission may give besides its type and payload (see ``POST /api/v1/tasks``);
    the task type's defaults fill in the rest."""

    queue: str
    priority: int
    max_attempts: int
    timeout: float
    delay: float  # seconds from now; or scheduled_at, not both
    scheduled_at: str | float  # ISO 8601 (naive means UTC) or POSIX seconds
    metadata: dict[str, Any]
    idempotency_key: str  # unique among live tasks: a second submission raises DuplicateTask
    # This task's retry policy, or its JSON form (backoff, base, factor, cap, jitter); left
    # out: its queue's, its type's or the node's.
    retry: RetryPolicy | Mapping[str, Any]


def _item(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A submission as JSON: a ``RetryPolicy`` given as such goes in its JSON form."""
    item = dict(fields)
    if isinstance(item.get("retry"), RetryPolicy):
        item["retry"] = policy_json(item["retry"])
    return item


def _pause(failures: int) -> float:
    return min(_MAX_PAUSE, _FIRST_PAUSE * 2.0**failures)


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class Client:
    """The API of the node at ``base_url`` (``http://host:port``), over one aiohttp session.

    ``token`` is sent as ``Authorization: Bearer <token>``; ``timeout`` bounds each request
    (not ``wait`` and ``events``, which have their own). Use it as an async context manager,
    or ``close()`` it.
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        """The session, made on first use: inside the loop that uses it."""
        if self._closed:
            raise ActorqError("this client is closed")
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=timeout)
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        task_id: str | None = None,
        submitted: Sequence[Mapping[str, Any]] = (),
    ) -> Any:
        url = self.base_url + path
        try:
            async with self._http().request(method, url, json=body, params=params) as resp:
                status = resp.status
                try:
                    data = await resp.json(content_type=None)
                except ValueError:  # not JSON: a proxy's page, say
                    data = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"{method} {url}: {_why(exc)}") from exc
        if status >= 400:
            raise error_from_json(status, data, task_id=task_id, submitted=submitted)
        if data is None:
            raise ActorqError(f"{method} {url}: HTTP {status} without a JSON body")
        return data

    # -- tasks -----------------------------------------------------------------------------

    async def submit(
        self,
        type: str,  # noqa: A002 - the API's own name for it
        payload: Any = None,
        **fields: Unpack[TaskFields],
    ) -> Task:
        """Submit one task; returns it once the node has made it durable."""
        item = _item({"type": type, "payload": payload, **fields})
        return task_from_json(await self._call("POST", _TASKS, body=item, submitted=[item]))

    async def submit_many(self, items: Iterable[Mapping[str, Any]]) -> builtins.list[Task]:
        """Submit a batch in one transaction: all of its tasks, or none. Each item is a
        mapping of ``type``, ``payload`` and ``TaskFields``. The error of one item raises
        ``BatchItemError``: its ``index`` names the item, its ``error`` is the typed error."""
        batch = [_item(item) for item in items]
        data = await self._call("POST", _TASKS, body=batch, submitted=batch)
        return [task_from_json(t) for t in data["tasks"]]

    async def get(self, task_id: str) -> Task:
        return task_from_json(await self._call("GET", _task(task_id), task_id=task_id))

    async def history(self, task_id: str) -> builtins.list[Event]:
        """Every journal event of the task, oldest first: who did what, when."""
        data = await self._call("GET", _task(task_id) + "/history", task_id=task_id)
        return [event_from_json(e) for e in data["events"]]

    async def cancel(self, task_id: str) -> Task:
        """Cancel a queued or scheduled task (a running one is told to stop); a finished task
        raises ``InvalidTransition``."""
        return task_from_json(await self._call("DELETE", _task(task_id), task_id=task_id))

    async def retry(self, task_id: str) -> Task:
        """Queue a dead or cancelled task again."""
        path = _task(task_id) + "/retry"
        return task_from_json(await self._call("POST", path, task_id=task_id))

    async def list(
        self,
        *,
        state: TaskState | str | None = None,
        queue: str | None = None,
        type: str | None = None,  # noqa: A002 - the API's own name for it
        limit: int = 100,
        cursor: str | None = None,
        by: str | None = None,
    ) -> AsyncIterator[Page]:
        """The tasks that match, newest first, one page (of at most ``limit``) at a time,
        following ``next_cursor`` until the last; ``cursor`` starts from a page seen before."""
        params = {"limit": str(limit)}
        for name, value in (("state", state), ("queue", queue), ("type", type), ("by", by)):
            if value is not None:
                params[name] = str(value)
        while True:
            if cursor is not None:
                params["cursor"] = cursor
            data = await self._call("GET", _TASKS, params=params)
            page = Page([task_from_json(t) for t in data["tasks"]], data.get("next_cursor"))
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def wait(
        self, task_id: str, timeout: float = 60.0, states: Collection[TaskState] | None = None
    ) -> Task:
        """The task once it is in one of ``states`` (default: finished); ``TimeoutError``
        after ``timeout`` seconds.

        Follows the event stream for the task; while the stream is down, reads the task
        (GET) at growing intervals and connects again.
        """
        wanted = frozenset(states or FINISHED_STATES)
        async with asyncio.timeout(timeout):
            task = await self.get(task_id)  # a wrong id or an unreachable server: at once
            failures = 0
            while task.state not in wanted:
                try:
                    seen = await self._watch(task_id, wanted)
                except _DROPPED as exc:
                    log.info("waiting for %s: the event stream failed (%s)", task_id, _why(exc))
                    seen = None
                if seen is not None:
                    return seen
                await asyncio.sleep(_pause(failures))
                failures += 1
                with contextlib.suppress(Unavailable):
                    task = await self.get(task_id)
        return task

    async def _watch(self, task_id: str, wanted: frozenset[TaskState]) -> Task | None:
        """The task once the stream says it reached ``wanted``; None if the stream ended."""
        async with self._stream(None) as resp:
            # Read only once subscribed: a change between the two is on the stream.
            task = await self.get(task_id)
            if task.state in wanted:
                return task
            async for message in sse_messages(resp.content):
                if message.event == "lagged":
                    return None
                item = json.loads(message.data)
                if item.get("task_id") == task_id and item.get("state") in wanted:
                    return await self.get(task_id)
        return None

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letters(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,  # noqa: A002 - the API's own name for it
        limit: int = 100,
        cursor: str | None = None,
    ) -> AsyncIterator[Page]:
        """The dead tasks (each with its last error and attempts), newest first, a page at a
        time, as ``list`` pages."""
        filters = (("queue", queue), ("type", type))
        params = {"limit": str(limit)} | {k: v for k, v in filters if v is not None}
        while True:
            if cursor is not None:
                params["cursor"] = cursor
            data = await self._call("GET", _DEAD, params=params)
            page = Page([task_from_json(t) for t in data["dead_letters"]], data["next_cursor"])
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def retry_dead_letters(
        self,
        ids: Sequence[str] | None = None,
        *,
        queue: str | None = None,
        type: str | None = None,  # noqa: A002 - the API's own name for it
    ) -> int:
        """Queue again, with a fresh attempt budget, the dead letters named by ``ids``, or of
        ``queue``/``type``, or all of them; how many."""
        data = await self._call("POST", _DEAD + "/retry", body=_selection(ids, queue, type))
        return int(data["retried"])

    async def purge_dead_letters(
        self,
        ids: Sequence[str] | None = None,
        *,
        queue: str | None = None,
        type: str | None = None,  # noqa: A002 - the API's own name for it
    ) -> int:
        """Remove those dead letters from the live projection (their history stays); how
        many."""
        data = await self._call("POST", _DEAD + "/purge", body=_selection(ids, queue, type))
        return int(data["purged"])

    # -- nodes -----------------------------------------------------------------------------

    async def nodes(self) -> builtins.list[dict[str, Any]]:
        """The live nodes and those gone within the last hour (``status``: live or gone)."""
        data = await self._call("GET", _NODES)
        return [dict(n) for n in data["nodes"]]

    async def node(self, node: str) -> dict[str, Any]:
        return dict(await self._call("GET", _node(node)))

    async def command_node(self, node: str, command: str) -> dict[str, Any]:
        """``pause``, ``resume`` or ``drain`` the node; answers the node with the order."""
        return dict(await self._call("POST", f"{_node(node)}/{command}"))

    # -- queues ----------------------------------------------------------------------------

    async def queues(self) -> builtins.list[dict[str, Any]]:
        """Every queue (named by a task or configured): settings, tasks by state, the age of
        its oldest queued task, finished tasks per second."""
        data = await self._call("GET", _QUEUES)
        return [dict(q) for q in data["queues"]]

    async def queue(self, name: str) -> dict[str, Any]:
        return dict(await self._call("GET", _queue(name)))

    async def configure_queue(self, /, name: str, **settings: Any) -> dict[str, Any]:
        """Change any of ``paused``, ``concurrency``, ``rate_limit`` (``{"limit", "period"}``),
        ``max_depth``, ``retention``; None clears one. Answers the queue."""
        return dict(await self._call("PATCH", _queue(name), body=settings))

    async def pause_queue(self, name: str) -> dict[str, Any]:
        return dict(await self._call("POST", _queue(name) + "/pause"))

    async def resume_queue(self, name: str) -> dict[str, Any]:
        return dict(await self._call("POST", _queue(name) + "/resume"))

    async def purge_queue(self, name: str, states: Sequence[str] | None = None) -> int:
        """Cancel the queue's tasks in ``states`` (default: queued and scheduled)."""
        body = None if states is None else {"states": builtins.list(states)}
        data = await self._call("POST", _queue(name) + "/purge", body=body)
        return int(data["purged"])

    # -- tokens (an admin token's calls) ----------------------------------------------------

    async def tokens(self) -> builtins.list[dict[str, Any]]:
        """Every token (name, scope, created_at, created_by, revoked_at); never a secret."""
        data = await self._call("GET", "/api/v1/tokens")
        tokens: builtins.list[dict[str, Any]] = data["tokens"]
        return tokens

    async def create_token(self, name: str, scope: str) -> dict[str, Any]:
        """A new token; its ``secret`` is in this answer and nowhere else."""
        body = {"name": name, "scope": scope}
        created: dict[str, Any] = await self._call("POST", "/api/v1/tokens", body=body)
        return created

    async def revoke_token(self, name: str) -> dict[str, Any]:
        path = f"/api/v1/tokens/{urllib.parse.quote(name, safe='')}"
        revoked: dict[str, Any] = await self._call("DELETE", path)
        return revoked

    # -- schedules -------------------------------------------------------------------------

    async def schedules(self) -> builtins.list[Schedule]:
        """Every schedule, by name, with its next and last run."""
        data = await self._call("GET", _SCHEDULES)
        return [schedule_from_json(s) for s in data["schedules"]]

    async def schedule(self, name: str) -> Schedule:
        return schedule_from_json(await self._call("GET", _schedule(name)))

    async def create_schedule(self, definition: Mapping[str, Any]) -> Schedule:
        """Create a schedule from its JSON definition (``name``, ``cron`` or ``every``,
        ``task``, and optionally ``timezone``, ``paused``, ``misfire``); a taken name raises
        ``DuplicateSchedule``."""
        return schedule_from_json(await self._call("POST", _SCHEDULES, body=dict(definition)))

    async def change_schedule(self, name: str, changes: Mapping[str, Any]) -> Schedule:
        body = dict(changes)
        return schedule_from_json(await self._call("PATCH", _schedule(name), body=body))

    async def pause_schedule(self, name: str) -> Schedule:
        return schedule_from_json(await self._call("POST", _schedule(name) + "/pause"))

    async def resume_schedule(self, name: str) -> Schedule:
        return schedule_from_json(await self._call("POST", _schedule(name) + "/resume"))

    async def delete_schedule(self, name: str) -> Schedule:
        """The schedule as it was; an unknown name raises ``ScheduleNotFound``."""
        return schedule_from_json(await self._call("DELETE", _schedule(name)))

    # -- the node --------------------------------------------------------------------------

    async def types(self) -> builtins.list[TaskTypeInfo]:
        """The task types the cluster serves, with their defaults and serving nodes."""
        data = await self._call("GET", "/api/v1/types")
        return [task_type_from_json(t) for t in data["types"]]

    async def stats(self) -> dict[str, Any]:
        """Counts by state and queue, event counts, throughput and pickup latency (the JSON
        of ``GET /api/v1/stats``)."""
        return dict(await self._call("GET", "/api/v1/stats"))

    async def health(self) -> dict[str, Any]:
        """The node answers: ``{"status": "ok", "node": ...}``."""
        return dict(await self._call("GET", "/health"))

    async def ready(self) -> dict[str, Any]:
        """``{"status": "ready", "journal_seq": ...}``; a node that cannot claim and write
        raises ``Unavailable`` saying why."""
        return dict(await self._call("GET", "/ready"))

    # -- the live event stream -------------------------------------------------------------

    async def events(self) -> AsyncIterator[LiveEvent]:
        """Every event the cluster commits from now on, as it happens; endless.

        A dropped stream (the server restarts, the network fails, the reader lagged behind)
        is connected again by itself, after a pause that doubles up to 5 s. Each event's
        id (its journal seq) goes back as ``Last-Event-ID``, so the server first sends what
        was committed meanwhile: none is missed (on PostgreSQL one may, rarely, come twice;
        its ``seq`` tells). Errors that are not about reaching the server (a refused
        token...) are raised.
        """
        last_id: str | None = None
        failures = 0
        while True:
            try:
                async with self._stream(last_id) as resp:
                    failures = 0
                    async for message in sse_messages(resp.content):
                        last_id = message.id or last_id
                        if message.event == "lagged":
                            resume = json.loads(message.data).get("seq")
                            last_id = str(resume) if resume is not None else last_id
                            log.info("the event stream lagged behind; resuming after %s", last_id)
                            break
                        yield live_event_from_json(json.loads(message.data))
            except _DROPPED as exc:
                log.info("the event stream dropped (%s); connecting again", _why(exc))
            await asyncio.sleep(_pause(failures))
            failures += 1

    @contextlib.asynccontextmanager
    async def _stream(self, last_id: str | None) -> AsyncIterator[aiohttp.ClientResponse]:
        """``GET /api/v1/events``, open: once it returns, every commit reaches it."""
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        url = self.base_url + _EVENTS
        timeout = aiohttp.ClientTimeout(total=None, connect=self._timeout, sock_read=_STREAM_IDLE)
        try:
            resp = await self._http().get(url, headers=headers, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"GET {url}: {_why(exc)}") from exc
        try:
            if resp.status >= 400:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                raise error_from_json(resp.status, body)
            yield resp
        finally:
            resp.close()  # an unfinished stream: its connection cannot be used again


def _selection(ids: Sequence[str] | None, queue: str | None, type_: str | None) -> dict[str, Any]:
    if ids is not None:
        return {"ids": builtins.list(ids), "queue": queue, "type": type_}
    return {"queue": queue, "type": type_}


_QUEUES = "/api/v1/queues"
_NODES = "/api/v1/nodes"


def _node(node: str) -> str:
    return f"{_NODES}/{urllib.parse.quote(node, safe='')}"


def _queue(name: str) -> str:
    return f"{_QUEUES}/{urllib.parse.quote(name, safe='')}"


def _task(task_id: str) -> str:
    return f"{_TASKS}/{urllib.parse.quote(task_id, safe='')}"


def _schedule(name: str) -> str:
    return f"{_SCHEDULES}/{urllib.parse.quote(name, safe='')}"
