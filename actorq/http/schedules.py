"""Schedule routes: create, list, show, change, pause, resume, delete and history.

A body is checked in full (``actorq.schedules``) before it reaches the journal; a task type no
live node serves is a 422, like a submission's.
"""

from __future__ import annotations

import time
from typing import Any

import aiojobs.aiohttp
from aiohttp import web

from actorq.errors import ScheduleNotFound, TaskNotFound
from actorq.http.keys import RUNTIME
from actorq.http.tasks import json_body
from actorq.model import SCHEDULE_SUBJECT
from actorq.nodes import Catalog, names_in
from actorq.render import event_json
from actorq.runtime import Runtime
from actorq.schedules import NAME, parse_change, parse_schedule
from actorq.wire import schedule_json

routes = web.RouteTableDef()
_PATH = "/api/v1/schedules"


def _name(request: web.Request) -> str:
    """The path's schedule name; one no schedule can have is unknown without a query."""
    name = request.match_info["name"]
    if not NAME.fullmatch(name):
        raise ScheduleNotFound(name[:100])
    return name


async def _catalog(runtime: Runtime, body: Any) -> Catalog:
    """The task types the body's task may name: this node's, then the cluster's."""
    task = body.get("task") if isinstance(body, dict) else None
    return await runtime.catalog(names_in([task]))


@routes.post(_PATH)
@aiojobs.aiohttp.atomic
async def create(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    body = await json_body(request)
    schedule = parse_schedule(body, await _catalog(runtime, body), time.time())
    saved = await runtime.schedules.create(schedule)
    return web.json_response(schedule_json(saved), status=201)


@routes.get(_PATH)
async def list_schedules(request: web.Request) -> web.Response:
    schedules = await request.app[RUNTIME].schedules.list()
    return web.json_response({"schedules": [schedule_json(s) for s in schedules]})


@routes.get(_PATH + "/{name}")
async def get_schedule(request: web.Request) -> web.Response:
    schedule = await request.app[RUNTIME].schedules.get(_name(request))
    return web.json_response(schedule_json(schedule))


@routes.patch(_PATH + "/{name}")
@aiojobs.aiohttp.atomic
async def change(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    name = _name(request)
    body = await json_body(request)
    catalog = await _catalog(runtime, body)
    now = time.time()
    parse_change(await runtime.schedules.get(name), body, catalog, now)  # refuse before a write
    saved = await runtime.schedules.change(name, lambda s: parse_change(s, body, catalog, now))
    return web.json_response(schedule_json(saved))


@routes.post(_PATH + "/{name}/pause")
@aiojobs.aiohttp.atomic
async def pause(request: web.Request) -> web.Response:
    saved = await request.app[RUNTIME].schedules.set_paused(_name(request), True)
    return web.json_response(schedule_json(saved))


@routes.post(_PATH + "/{name}/resume")
@aiojobs.aiohttp.atomic
async def resume(request: web.Request) -> web.Response:
    saved = await request.app[RUNTIME].schedules.set_paused(_name(request), False)
    return web.json_response(schedule_json(saved))


@routes.delete(_PATH + "/{name}")
@aiojobs.aiohttp.atomic
async def delete(request: web.Request) -> web.Response:
    """Deletes the schedule (its history stays in the journal); answers it as it was."""
    deleted = await request.app[RUNTIME].schedules.delete(_name(request))
    return web.json_response(schedule_json(deleted))


@routes.get(_PATH + "/{name}/history")
async def history(request: web.Request) -> web.Response:
    """Every journal event of the schedule, oldest first, deleted schedules' too."""
    name = _name(request)
    try:
        events = await request.app[RUNTIME].journal.history(SCHEDULE_SUBJECT + name)
    except TaskNotFound:
        raise ScheduleNotFound(name) from None
    return web.json_response({"events": [event_json(e) for e in events]})
