"""Authentication and scopes, route by route, in one middleware.

Which scope a route needs is decided here and nowhere else (``needed``): a table of the
exceptions, and a rule for the rest (a GET reads, anything else operates). A route added
later is covered by that rule, or by one more entry in the table. The request then acts as
its token: ``auth.ACTOR`` holds the token's name while its handler runs, so the events it
journals name it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from actorq.auth import ACTOR, Keyring, Scope
from actorq.errors import Forbidden, Unauthorized

log = logging.getLogger("actorq.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What an API call records as its actor when auth is off: nobody proved who they are.
ANONYMOUS = "anonymous"
OPEN = None  # no token needed

# (method, route) -> scope; "*" matches any method. Routes are aiohttp's canonical paths.
_TABLE: dict[tuple[str, str], Scope | None] = {
    ("*", "/health"): OPEN,
    ("*", "/ready"): OPEN,
    # The dashboard's page and files and the API's description hold no data; the page asks
    # for a token itself when the API answers 401.
    ("GET", "/"): OPEN,
    ("GET", "/static/{name}"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("POST", "/api/v1/tasks"): Scope.SUBMIT,
    ("*", "/api/v1/tokens"): Scope.ADMIN,
    ("*", "/api/v1/tokens/{name}"): Scope.ADMIN,
}
_READING = frozenset({"GET", "HEAD"})


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return request.path if resource is None else resource.canonical


def needed(method: str, route: str, *, metrics_public: bool = False) -> Scope | None:
    """The scope a request needs (None: open to anyone)."""
    if route == "/metrics":
        return OPEN if metrics_public else Scope.READ
    for key in ((method, route), ("*", route)):
        if key in _TABLE:
            return _TABLE[key]
    if method == "OPTIONS":  # a CORS preflight carries no credentials, by the standard
        return OPEN
    return Scope.READ if method in _READING else Scope.OPERATE


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    kind, _, secret = header.partition(" ")
    if kind.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def middleware(keyring: Keyring | None, *, metrics_public: bool = False) -> Middleware:
    """``keyring`` None: auth switched off (``--no-auth``); every call is anonymous."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        scope = needed(request.method, route_of(request), metrics_public=metrics_public)
        if keyring is None or not await keyring.enabled():
            reset = ACTOR.set(ANONYMOUS)
        else:
            actor = await _check(keyring, request, scope)
            reset = ACTOR.set(actor)
        try:
            return await handler(request)
        finally:
            ACTOR.reset(reset)

    return authenticate


async def _check(keyring: Keyring, request: web.Request, scope: Scope | None) -> str | None:
    """The token's name (None for an open route without a token); else Unauthorized or
    Forbidden."""
    secret = bearer(request)
    if secret is None:
        if scope is None:
            return None
        raise Unauthorized("this API needs a token: send Authorization: Bearer <token>")
    token = await keyring.authenticate(secret)
    if token is None:
        if scope is None:
            return None
        raise Unauthorized("the token is unknown or revoked")
    if scope is not None and not token.scope.covers(scope):
        raise Forbidden(f"token {token.name!r} has scope {token.scope}; this needs {scope}")
    return token.name


def challenge(exc: Unauthorized | Forbidden) -> str:
    """The WWW-Authenticate header of a 401 or 403 (RFC 6750)."""
    if isinstance(exc, Forbidden):
        return 'Bearer realm="actorq", error="insufficient_scope"'
    if "unknown or revoked" in str(exc):
        return 'Bearer realm="actorq", error="invalid_token"'
    return 'Bearer realm="actorq"'
