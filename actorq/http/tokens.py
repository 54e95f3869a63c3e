"""Token routes (scope ``admin``): list, create (the secret is in this one answer only) and
revoke. A change is seen by this node at once and by the others within their keyring's
refresh (``ACTORQ_AUTH_REFRESH``). Also the stream tickets (scope ``read``) a browser opens
the event stream with (see ``actorq.http.auth.Tickets``)."""

from __future__ import annotations

import aiojobs.aiohttp
from aiohttp import web

from actorq.auth import ACTOR, Token, check_name, new_token, parse_scope
from actorq.errors import InvalidInput, TokenNotFound
from actorq.http.auth import ANONYMOUS, TICKET_SECONDS
from actorq.http.keys import KEYRING, RUNTIME, TICKETS
from actorq.http.tasks import json_body
from actorq.render import iso

routes = web.RouteTableDef()


def token_json(token: Token) -> dict[str, object]:
    return {
        "name": token.name,
        "scope": token.scope.value,
        "created_at": iso(token.created_at),
        "created_by": token.created_by,
        "revoked_at": None if token.revoked_at is None else iso(token.revoked_at),
    }


@routes.get("/api/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    tokens = await request.app[RUNTIME].journal.tokens()
    return web.json_response({"tokens": [token_json(t) for t in tokens]})


@routes.post("/api/v1/tokens")
@aiojobs.aiohttp.atomic
async def create_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) - {"name", "scope"} or "name" not in body:
        raise InvalidInput('the body is {"name": ..., "scope": "read|submit|operate|admin"}')
    runtime = request.app[RUNTIME]
    scope = parse_scope(body.get("scope", "read"))
    by = ACTOR.get() or ANONYMOUS
    token, secret = new_token(body["name"], scope, runtime.clock(), by)
    await runtime.journal.create_token(token)
    request.app[KEYRING].forget()
    return web.json_response({**token_json(token), "secret": secret}, status=201)


@routes.delete("/api/v1/tokens/{name}")
@aiojobs.aiohttp.atomic
async def revoke_token(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        check_name(name)
    except InvalidInput:
        raise TokenNotFound(name[:100]) from None
    runtime = request.app[RUNTIME]
    token = await runtime.journal.revoke_token(name, runtime.clock())
    request.app[KEYRING].forget()
    return web.json_response(token_json(token))


@routes.post("/api/v1/events/ticket")
async def stream_ticket(request: web.Request) -> web.Response:
    """A single-use ticket to open ``GET /api/v1/events?ticket=...`` within 30 s as this
    token (no token while auth is off: the stream is open anyway)."""
    ticket = request.app[TICKETS].issue(ACTOR.get() or ANONYMOUS)
    return web.json_response({"ticket": ticket, "expires_in": TICKET_SECONDS}, status=201)
