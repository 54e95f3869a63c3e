"""Task routes: submit (one or a batch), list, show, history, cancel, retry."""

from __future__ import annotations

import time
from typing import Any

import aiojobs.aiohttp
from aiohttp import web

from actorq.errors import InvalidInput
from actorq.http.keys import RUNTIME
from actorq.model import TaskFilter, TaskState
from actorq.nodes import names_in
from actorq.render import event_json, task_json
from actorq.tasks import parse_submission

routes = web.RouteTableDef()
MAX_PAGE = 500


async def _json_body(request: web.Request) -> Any:
    if not request.can_read_body:
        raise InvalidInput("a JSON body is required")
    return await request.json()


@routes.post("/api/v1/tasks")
@aiojobs.aiohttp.atomic  # a client hanging up must not abort a submission half-way
async def submit(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    body = await _json_body(request)
    now = time.time()
    # Types this node does not know may be served by another live node: resolve them first.
    catalog = await runtime.catalog(names_in(body if isinstance(body, list) else [body]))
    if isinstance(body, list):
        if not body:
            raise InvalidInput("a batch must hold at least one task")
        if len(body) > runtime.config.max_batch:
            raise InvalidInput(f"a batch holds at most {runtime.config.max_batch} tasks")
        news = []
        for i, item in enumerate(body):
            try:
                news.append(parse_submission(item, catalog, now))
            except InvalidInput as exc:
                raise InvalidInput(f"task [{i}]: {exc}") from None
        tasks = await runtime.submit(news)
        return web.json_response({"tasks": [task_json(t) for t in tasks]}, status=201)
    (task,) = await runtime.submit([parse_submission(body, catalog, now)])
    return web.json_response(task_json(task), status=201)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidInput(f"limit must be an integer, got {raw!r}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    return limit


@routes.get("/api/v1/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    q = request.query
    state = q.get("state")
    if state is not None and state not in TaskState.__members__.values():
        allowed = ", ".join(s.value for s in TaskState)
        raise InvalidInput(f"state must be one of {allowed}, got {state!r}")
    query = TaskFilter(
        state=TaskState(state) if state else None, queue=q.get("queue"), type=q.get("type")
    )
    page = await request.app[RUNTIME].list_tasks(query, _limit(request), q.get("cursor"))
    return web.json_response(
        {"tasks": [task_json(t) for t in page.tasks], "next_cursor": page.next_cursor}
    )


@routes.get("/api/v1/tasks/{id}")
async def get_task(request: web.Request) -> web.Response:
    task = await request.app[RUNTIME].get(request.match_info["id"])
    return web.json_response(task_json(task))


@routes.get("/api/v1/tasks/{id}/history")
async def history(request: web.Request) -> web.Response:
    events = await request.app[RUNTIME].history(request.match_info["id"])
    return web.json_response({"events": [event_json(e) for e in events]})


@routes.delete("/api/v1/tasks/{id}")
@aiojobs.aiohttp.atomic
async def cancel(request: web.Request) -> web.Response:
    task = await request.app[RUNTIME].cancel(request.match_info["id"])
    return web.json_response(task_json(task))


@routes.post("/api/v1/tasks/{id}/retry")
@aiojobs.aiohttp.atomic
async def retry(request: web.Request) -> web.Response:
    task = await request.app[RUNTIME].retry(request.match_info["id"])
    return web.json_response(task_json(task))
