"""Queue routes: list and show queues, change their settings (PATCH, pause, resume), purge.

Every body is checked in full (``actorq.queues``) before anything is written; a change is one
``queue_configured`` event, which every node hears of at once.
"""

from __future__ import annotations

import aiojobs.aiohttp
from aiohttp import web

from actorq.errors import InvalidInput, QueueNotFound
from actorq.http.keys import RUNTIME
from actorq.http.tasks import json_body, parse_json
from actorq.queues import check_name, parse_patch, parse_purge

routes = web.RouteTableDef()


def _name(request: web.Request, *, known: bool = False) -> str:
    """The path's queue name; one no queue can have is unknown (GET) or refused (a change)."""
    name = request.match_info["name"]
    try:
        return check_name(name)
    except InvalidInput:
        if known:
            raise QueueNotFound(name[:200]) from None
        raise


@routes.get("/api/v1/queues")
async def list_queues(request: web.Request) -> web.Response:
    return web.json_response({"queues": await request.app[RUNTIME].queues()})


@routes.get("/api/v1/queues/{name}")
async def get_queue(request: web.Request) -> web.Response:
    return web.json_response(await request.app[RUNTIME].queue(_name(request, known=True)))


@routes.patch("/api/v1/queues/{name}")
@aiojobs.aiohttp.atomic
async def patch_queue(request: web.Request) -> web.Response:
    name = _name(request)
    changes = parse_patch(await json_body(request))
    return web.json_response(await request.app[RUNTIME].configure_queue(name, changes))


@routes.post("/api/v1/queues/{name}/pause")
@aiojobs.aiohttp.atomic
async def pause(request: web.Request) -> web.Response:
    queue = await request.app[RUNTIME].configure_queue(_name(request), {"paused": True})
    return web.json_response(queue)


@routes.post("/api/v1/queues/{name}/resume")
@aiojobs.aiohttp.atomic
async def resume(request: web.Request) -> web.Response:
    queue = await request.app[RUNTIME].configure_queue(_name(request), {"paused": False})
    return web.json_response(queue)


@routes.post("/api/v1/queues/{name}/purge")
@aiojobs.aiohttp.atomic
async def purge(request: web.Request) -> web.Response:
    """Cancel the queue's tasks in the states named (default: queued and scheduled)."""
    name = _name(request)
    raw = await request.read()
    if raw.strip():
        body = parse_json(raw)
        if not isinstance(body, dict):  # JSON null too: only an empty body means the default
            raise InvalidInput('the body must be {"states": [...]} or empty')
        states = parse_purge(body)
    else:
        states = parse_purge(None)
    purged = await request.app[RUNTIME].purge_queue(name, states)
    return web.json_response({"purged": purged})
