"""Authentication and scopes, route by route, in one middleware.

Which scope a route needs is decided here and nowhere else (``needed``): a table of the
exceptions, and a rule for the rest (a GET reads, anything else operates). A route added
later is covered by that rule, or by one more entry in the table. The request then acts as
its token: ``auth.ACTOR`` holds the token's name while its handler runs, so the events it
journals name it.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from actorq.auth import ACTOR, RESERVED, Keyring, Scope
from actorq.errors import Forbidden, Unauthorized

log = logging.getLogger("actorq.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What an API call records as its actor when auth is off: nobody proved who they are.
ANONYMOUS = RESERVED
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
    # A stream ticket is for reading the stream: asking for one only needs read.
    ("POST", "/api/v1/events/ticket"): Scope.READ,
    ("*", "/api/v1/tokens"): Scope.ADMIN,
    ("*", "/api/v1/tokens/{name}"): Scope.ADMIN,
}
_READING = frozenset({"GET", "HEAD"})
# Streams a browser opens without headers (EventSource; a WebSocket's handshake): they may
# authenticate with a stream ticket in the query instead (see Tickets).
TICKET_ROUTES = frozenset({"/api/v1/events", "/ws"})
TICKET_SECONDS = 30.0


class Tickets:
    """Short-lived, single-use stream tickets. A browser's EventSource cannot send an
    Authorization header, and a long-lived secret in a URL ends up in logs and history; so
    the page asks for a ticket with its token (POST /api/v1/events/ticket) and opens the
    stream with it: worth one use, within ``TICKET_SECONDS``, on the node that issued it.
    The ticket is bound to its token, which must still be valid when it is used."""

    def __init__(self, clock: Callable[[], float], *, most: int = 10_000) -> None:
        self._clock = clock
        self._most = most
        self._open: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def issue(self, token_name: str) -> str:
        now = self._clock()
        while self._open and (next(iter(self._open.values()))[1] < now
                              or len(self._open) >= self._most):  # fmt: skip
            self._open.popitem(last=False)  # the oldest first: they expire first
        ticket = secrets.token_urlsafe(24)
        self._open[ticket] = (token_name, now + TICKET_SECONDS)
        return ticket

    def redeem(self, ticket: str) -> str | None:
        """The name of the token the ticket was issued to; None if unknown, used or late."""
        found = self._open.pop(ticket, None)
        if found is None or found[1] < self._clock():
            return None
        return found[0]


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return request.path if resource is None else resource.canonical


def needed(method: str, route: str, *, metrics_public: bool = False) -> Scope | None:
    """The scope a request needs (None: open to anyone)."""
    if route == "/metrics":
        return OPEN if metrics_public else Scope.READ
    if method == "HEAD":  # a GET without the body: the same rule
        method = "GET"
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


def middleware(
    keyring: Keyring | None, tickets: Tickets, *, metrics_public: bool = False
) -> Middleware:
    """``keyring`` None: auth switched off (``--no-auth``); every call is anonymous."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_of(request)
        scope = needed(request.method, route, metrics_public=metrics_public)
        if scope is OPEN:
            # Open routes write nothing, and must answer without the database: /health says
            # the process is alive while the tokens table cannot be read.
            return await handler(request)
        if keyring is None or not await keyring.enabled():
            reset = ACTOR.set(ANONYMOUS)
        elif route in TICKET_ROUTES and "ticket" in request.query and bearer(request) is None:
            reset = ACTOR.set(await _by_ticket(keyring, tickets, request.query["ticket"]))
        else:
            actor = await _check(keyring, request, scope)
            reset = ACTOR.set(actor)
        try:
            return await handler(request)
        finally:
            ACTOR.reset(reset)

    return authenticate


async def _check(keyring: Keyring, request: web.Request, scope: Scope) -> str:
    """The name of the request's token; else Unauthorized or Forbidden."""
    secret = bearer(request)
    if secret is None:
        raise Unauthorized("this API needs a token: send Authorization: Bearer <token>")
    token = await keyring.authenticate(secret)
    if token is None:
        raise Unauthorized("the token is unknown or revoked")
    if not token.scope.covers(scope):
        raise Forbidden(f"token {token.name!r} has scope {token.scope}; this needs {scope}")
    return token.name


async def _by_ticket(keyring: Keyring, tickets: Tickets, ticket: str) -> str:
    """A stream opened with a ticket acts as the ticket's token (which needed read to get it),
    if that token is still valid."""
    name = tickets.redeem(ticket)
    valid = {t.name for t in await keyring.tokens() if t.active}
    if name is None or name not in valid:
        raise Unauthorized("the stream ticket is unknown, used, expired or its token revoked")
    return name


def challenge(exc: Unauthorized | Forbidden) -> str:
    """The WWW-Authenticate header of a 401 or 403 (RFC 6750)."""
    if isinstance(exc, Forbidden):
        return 'Bearer realm="actorq", error="insufficient_scope"'
    if "unknown or revoked" in str(exc):
        return 'Bearer realm="actorq", error="invalid_token"'
    return 'Bearer realm="actorq"'
