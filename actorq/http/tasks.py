"""Task routes: submit (one or a batch), list, show, history, cancel, retry.

Every request is checked in full here, before it joins a shared commit: a bad value fails
its own request with a 400, never the batch of innocent requests committed with it.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any, NoReturn

import aiojobs.aiohttp
from aiohttp import web

from actorq.errors import (
    ActorqError,
    BatchItemError,
    DuplicateTask,
    InvalidInput,
    InvalidJson,
    TaskNotFound,
)
from actorq.http.keys import RUNTIME
from actorq.model import NewTask, TaskFilter, TaskState, is_control
from actorq.nodes import Catalog, names_in
from actorq.render import event_json, task_json
from actorq.retry import RetryDefaults
from actorq.submission import MAX_TEXT
from actorq.tasks import parse_submission

routes = web.RouteTableDef()
MAX_PAGE = 500
# What a query filter or a path id may not hold: control characters (NUL among them, which
# PostgreSQL cannot take) and lone surrogates (which no database can encode).
_UNFIT = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _refuse_constant(name: str) -> NoReturn:
    raise InvalidJson(f"request body is not valid JSON: {name} is not a JSON number")


async def json_body(request: web.Request) -> Any:
    """The body as JSON: UTF-8, no NaN or Infinity; any failure to read it is a 400."""
    if not request.can_read_body:
        raise InvalidInput("a JSON body is required")
    return parse_json(await request.read())


def parse_json(raw: bytes) -> Any:
    """A request body as JSON (see ``json_body``)."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise InvalidJson("request body is not UTF-8") from None
    except RecursionError:
        raise InvalidJson("request body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and an integer of too many digits
        raise InvalidJson(f"request body is not valid JSON: {exc}") from None


def _parse_batch(
    body: list[Any], request: web.Request, catalog: Catalog, now: float, retry: RetryDefaults
) -> list[NewTask]:
    """Every item checked, each error naming its item; keys unique within the batch."""
    runtime = request.app[RUNTIME]
    if not body:
        raise InvalidInput("a batch must hold at least one task")
    if len(body) > runtime.config.max_batch:
        raise InvalidInput(f"a batch holds at most {runtime.config.max_batch} tasks")
    news: list[NewTask] = []
    keys: dict[str, int] = {}
    for i, item in enumerate(body):
        try:
            new = parse_submission(item, catalog, now, retry)
            key = new.idempotency_key
            if key is not None and key in keys:
                raise InvalidInput(f"idempotency key {key!r} is also given to task [{keys[key]}]")
        except ActorqError as exc:
            raise BatchItemError(i, exc) from None
        if key is not None:
            keys[key] = i
        news.append(new)
    return news


@routes.post("/api/v1/tasks")
@aiojobs.aiohttp.atomic  # a client hanging up must not abort a submission half-way
async def submit(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    body = await json_body(request)
    now = time.time()
    # Types this node does not know may be served by another live node: resolve them first.
    catalog = await runtime.catalog(names_in(body if isinstance(body, list) else [body]))
    retry = await runtime.retry_defaults()
    if not isinstance(body, list):
        (task,) = await runtime.submit([parse_submission(body, catalog, now, retry)])
        return web.json_response(task_json(task), status=201)
    news = _parse_batch(body, request, catalog, now, retry)
    try:
        tasks = await runtime.submit(news)
    except DuplicateTask as exc:  # a key a live task holds: name the item that gave it
        index = next((i for i, n in enumerate(news) if n.idempotency_key == exc.key), None)
        if index is None:
            raise
        raise BatchItemError(index, exc) from None
    return web.json_response({"tasks": [task_json(t) for t in tasks]}, status=201)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidInput(f"limit must be an integer, got {raw[:40]!r}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    return limit


def _filter(request: web.Request, name: str) -> str | None:
    """A filter from the query; empty means none."""
    value = request.query.get(name) or None
    if value is not None and (len(value) > MAX_TEXT or _UNFIT.search(value)):
        raise InvalidInput(
            f"{name} must be at most {MAX_TEXT} characters, without control characters"
        )
    return value


def _cursor(request: web.Request) -> str | None:
    """``next_cursor`` of an earlier page, checked here so no journal sees a malformed one;
    empty means the first page."""
    raw = request.query.get("cursor") or None
    if raw is None:
        return None
    created, sep, task_id = raw.partition("~")
    try:
        ok = bool(sep and task_id) and math.isfinite(float(created))
    except ValueError:
        ok = False
    if not ok or len(raw) > 2 * MAX_TEXT or _UNFIT.search(task_id):
        raise InvalidInput("cursor must be the next_cursor of an earlier page")
    return raw


@routes.get("/api/v1/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    state = _filter(request, "state")
    if state is not None and state not in TaskState.__members__.values():
        allowed = ", ".join(s.value for s in TaskState)
        raise InvalidInput(f"state must be one of {allowed}, got {state[:40]!r}")
    query = TaskFilter(
        state=TaskState(state) if state else None,
        queue=_filter(request, "queue"),
        type=_filter(request, "type"),
        by=_filter(request, "by"),
    )
    page = await request.app[RUNTIME].list_tasks(query, _limit(request), _cursor(request))
    return web.json_response(
        {"tasks": [task_json(t) for t in page.tasks], "next_cursor": page.next_cursor}
    )


def _task_id(request: web.Request) -> str:
    """The path's task id. One no task can have (a NUL...) is unknown without asking the
    database, which might not be able to take it as a parameter; a control subject
    (``schedule:NAME``) is no task either, and its history is not a task's."""
    task_id = request.match_info["id"]
    if len(task_id) > MAX_TEXT or _UNFIT.search(task_id) or is_control(task_id):
        raise TaskNotFound(task_id[:MAX_TEXT])
    return task_id


@routes.get("/api/v1/tasks/{id}")
async def get_task(request: web.Request) -> web.Response:
    task = await request.app[RUNTIME].get(_task_id(request))
    return web.json_response(task_json(task))


@routes.get("/api/v1/tasks/{id}/history")
async def history(request: web.Request) -> web.Response:
    events = await request.app[RUNTIME].history(_task_id(request))
    return web.json_response({"events": [event_json(e) for e in events]})


@routes.delete("/api/v1/tasks/{id}")
@aiojobs.aiohttp.atomic
async def cancel(request: web.Request) -> web.Response:
    """Cancels the task (it stays, with its history); nothing is deleted."""
    task = await request.app[RUNTIME].cancel(_task_id(request))
    return web.json_response(task_json(task))


@routes.post("/api/v1/tasks/{id}/retry")
@aiojobs.aiohttp.atomic
async def retry(request: web.Request) -> web.Response:
    # The client's address goes into the event's data; its actor column names the token.
    task = await request.app[RUNTIME].retry(_task_id(request), by=f"api:{request.remote}")
    return web.json_response(task_json(task))
