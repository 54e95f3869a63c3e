"""Dead-letter routes: list them (filtered, paginated) with their last error and attempts;
retry or purge a selection of them (ids, or a queue/type filter, or all) in bounded chunks.

Each retried or purged task's history records who asked: ``api:<client address>`` (a token's
name once tokens exist).
"""

from __future__ import annotations

from typing import Any

import aiojobs.aiohttp
from aiohttp import web

from actorq.dead_letters import selection_from_json
from actorq.errors import InvalidInput
from actorq.http.keys import RUNTIME
from actorq.http.tasks import _cursor, _filter, _limit, json_body
from actorq.journal.base import DeadAction
from actorq.render import task_json

routes = web.RouteTableDef()


def requester(request: web.Request) -> str:
    """Who a request acts as, for the history: its client address."""
    return f"api:{request.remote or 'unknown'}"


@routes.get("/api/v1/dead-letters")
async def list_dead_letters(request: web.Request) -> web.Response:
    page = await request.app[RUNTIME].dead_letters(
        _filter(request, "queue"), _filter(request, "type"), _limit(request), _cursor(request)
    )
    return web.json_response(
        {"dead_letters": [task_json(t) for t in page.tasks], "next_cursor": page.next_cursor}
    )


async def _optional_body(request: web.Request) -> Any:
    """The JSON body (an object), or None when there is none (select every dead letter)."""
    if not request.body_exists or request.content_length == 0:
        return None
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object: {ids} or {queue, type}, or empty")
    return body


async def _settle(request: web.Request, action: DeadAction) -> int:
    selection = selection_from_json(await _optional_body(request))
    return await request.app[RUNTIME].settle_dead(action, selection, requester(request))


@routes.post("/api/v1/dead-letters/retry")
@aiojobs.aiohttp.atomic  # a client hanging up mid-way must not leave a chunk half-told
async def retry_dead_letters(request: web.Request) -> web.Response:
    return web.json_response({"retried": await _settle(request, DeadAction.RETRY)})


@routes.post("/api/v1/dead-letters/purge")
@aiojobs.aiohttp.atomic
async def purge_dead_letters(request: web.Request) -> web.Response:
    return web.json_response({"purged": await _settle(request, DeadAction.PURGE)})
