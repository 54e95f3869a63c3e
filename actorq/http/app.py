"""The aiohttp application: routes, the error middleware, and the runtime in app state.

Every error leaves as JSON ``{"error": {"code", "message", ...}}`` with the status it
deserves: domain errors, aiohttp's own (404, 405, 413) and unexpected failures alike, the
last as a 500 with a request id that the log line of its traceback carries too. Nothing below
this layer knows about HTTP.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiojobs.aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from actorq.actors.core import ActorError
from actorq.auth import Keyring
from actorq.errors import (
    ActorqError,
    BatchItemError,
    DuplicateSchedule,
    DuplicateTask,
    DuplicateToken,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    NodeNotFound,
    Overloaded,
    QueueFull,
    QueueNotFound,
    ScheduleNotFound,
    StorageError,
    TaskNotFound,
    TokenNotFound,
    Unauthorized,
    Unavailable,
    UnknownTaskType,
)
from actorq.http import auth, cors
from actorq.http.dead_letters import routes as dead_letter_routes
from actorq.http.journal import routes as journal_routes
from actorq.http.keys import KEYRING, RUNTIME, SHUTDOWN, TICKETS
from actorq.http.nodes import routes as node_routes
from actorq.http.queues import routes as queue_routes
from actorq.http.rate_limit import RateLimiter, middleware
from actorq.http.schedules import routes as schedule_routes
from actorq.http.streams import routes as stream_routes
from actorq.http.system import routes as system_routes
from actorq.http.tasks import routes as task_routes
from actorq.http.tokens import routes as token_routes
from actorq.runtime import Runtime

log = logging.getLogger("actorq.http")

_STATUS: dict[type[ActorqError], int] = {
    InvalidInput: 400,
    TaskNotFound: 404,
    QueueNotFound: 404,
    NodeNotFound: 404,
    QueueFull: 503,
    ScheduleNotFound: 404,
    DuplicateSchedule: 409,
    InvalidTransition: 409,
    DuplicateTask: 409,
    UnknownTaskType: 422,
    Overloaded: 503,
    Unavailable: 503,
    StorageError: 503,
    Unauthorized: 401,
    Forbidden: 403,
    TokenNotFound: 404,
    DuplicateToken: 409,
}
# A driver's message may name tables, hosts or values: it goes to the log, not to clients.
_STORAGE_MESSAGE = "the database failed to answer; try again later"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, **details: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, **details}}
    return web.json_response(body, status=status)


def _domain_error(request: web.Request, exc: ActorqError) -> web.Response:
    kind = exc.error if isinstance(exc, BatchItemError) else exc
    status = next((s for t, s in _STATUS.items() if isinstance(kind, t)), 500)
    message = str(exc)
    if isinstance(kind, StorageError):
        log.warning("%s %s: %s", request.method, request.path, exc)
        message = _STORAGE_MESSAGE
        if isinstance(exc, BatchItemError):
            message = f"task [{exc.index}]: {message}"
    resp = error_response(status, exc.code, message, **exc.details())
    if isinstance(kind, QueueFull):  # when a client may try again
        resp.headers["Retry-After"] = str(kind.retry_after)
    if isinstance(kind, Unauthorized | Forbidden):
        resp.headers["WWW-Authenticate"] = auth.challenge(kind)
    return resp


def _http_error(exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no route, wrong method, body too large) in our shape."""
    code = {413: "payload_too_large"}.get(exc.status) or exc.reason.lower().replace(" ", "_")
    resp = error_response(exc.status, code, exc.text or exc.reason)
    if "Allow" in exc.headers:  # a 405 says which methods the route takes
        resp.headers["Allow"] = exc.headers["Allow"]
    return resp


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ActorqError as exc:
        return _domain_error(request, exc)
    except (ActorError, TimeoutError) as exc:
        # An actor that stopped (the node is stopping) or did not answer an ask in time.
        log.warning("%s %s: %s", request.method, request.path, exc.__class__.__name__)
        return _domain_error(request, Unavailable("the node is busy or stopping; try again"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(exc)
    except Exception:
        request_id = REQUEST_ID.get() or uuid.uuid4().hex
        log.exception("%s %s failed [request_id=%s]", request.method, request.path, request_id,
                      extra={"request_id": request_id})  # fmt: skip
        resp = error_response(
            500, "internal_error", f"the server failed (request id {request_id})",
            request_id=request_id,
        )  # fmt: skip
        resp.headers["X-Request-Id"] = request_id
        return resp


# The id of the request being handled: each request runs in its connection's task and sets it
# first (a context variable, so it reaches the 500 handler and the response's headers alike).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "actorq_request_id", default=None
)
access_log = logging.getLogger("actorq.access")


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id (sent back as X-Request-Id, and carried by a 500's body and
    log line), and log one line per request once it is answered."""
    request_id = uuid.uuid4().hex
    REQUEST_ID.set(request_id)
    began = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect, or an error no middleware below turned
        status = exc.status
        raise
    finally:
        access_log.info(
            "%s %s %d", request.method, request.path, status,
            extra={"request_id": request_id, "method": request.method, "path": request.path,
                   "status": status, "remote": request.remote,
                   "duration_ms": round((time.monotonic() - began) * 1000, 3)},
        )  # fmt: skip


async def _send_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, streams included (their headers leave before the handler ends)."""
    request_id = REQUEST_ID.get()
    if request_id is not None:
        response.headers["X-Request-Id"] = request_id


async def _end_streams(app: web.Application) -> None:
    """On stop, open event streams end at once instead of holding the server's shutdown."""
    app[SHUTDOWN].set()


def make_app(runtime: Runtime) -> web.Application:
    setting = runtime.config.rate_limit
    # The rate limit first: a refused request costs nothing more.
    config = runtime.config
    keyring = Keyring(runtime.journal.tokens, runtime.clock, refresh=config.auth_refresh,
                      required=config.auth == "required")  # fmt: skip
    # Inside the error middleware, so a refusal is a JSON error like any other.
    checked = None if config.auth == "off" else keyring
    tickets = auth.Tickets(runtime.clock)
    chain: list[Middleware] = [
        errors, auth.middleware(checked, tickets, metrics_public=config.metrics_open)
    ]  # fmt: skip
    if setting is not None:
        chain.insert(0, middleware(RateLimiter.from_setting(setting)))
    if config.cors_origins:  # refusals (401, 429) must be readable by the page
        chain.insert(0, cors.middleware(config.cors_origins))
    chain.insert(0, access)  # outermost: it logs what the client got, a refusal included
    app = web.Application(middlewares=chain, client_max_size=runtime.config.max_body_bytes)
    app[RUNTIME] = runtime
    app[KEYRING] = keyring
    app[TICKETS] = tickets
    app[SHUTDOWN] = asyncio.Event()
    app.on_shutdown.append(_end_streams)
    app.on_response_prepare.append(_send_request_id)
    aiojobs.aiohttp.setup(app)
    app.add_routes(task_routes)
    app.add_routes(system_routes)
    app.add_routes(dead_letter_routes)
    app.add_routes(queue_routes)
    app.add_routes(schedule_routes)
    app.add_routes(token_routes)
    app.add_routes(node_routes)
    app.add_routes(stream_routes)
    app.add_routes(journal_routes)
    return app
