"""The aiohttp application: routes, the error middleware, and the runtime in app state.

Every error leaves as JSON ``{"error": {"code", "message", ...}}`` with the status it
deserves: domain errors, aiohttp's own (404, 405, 413) and unexpected failures alike, the
last as a 500 with a request id that the log line of its traceback carries too. Nothing below
this layer knows about HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiojobs.aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from actorq.actors.core import ActorError
from actorq.errors import (
    ActorqError,
    BatchItemError,
    DuplicateSchedule,
    DuplicateTask,
    InvalidInput,
    InvalidTransition,
    Overloaded,
    QueueFull,
    QueueNotFound,
    ScheduleNotFound,
    StorageError,
    TaskNotFound,
    Unavailable,
    UnknownTaskType,
)
from actorq.http.dead_letters import routes as dead_letter_routes
from actorq.http.journal import routes as journal_routes
from actorq.http.keys import RUNTIME, SHUTDOWN
from actorq.http.queues import routes as queue_routes
from actorq.http.rate_limit import RateLimiter, middleware
from actorq.http.schedules import routes as schedule_routes
from actorq.http.system import routes as system_routes
from actorq.http.tasks import routes as task_routes
from actorq.runtime import Runtime

log = logging.getLogger("actorq.http")

_STATUS: dict[type[ActorqError], int] = {
    InvalidInput: 400,
    TaskNotFound: 404,
    QueueNotFound: 404,
    QueueFull: 503,
    ScheduleNotFound: 404,
    DuplicateSchedule: 409,
    InvalidTransition: 409,
    DuplicateTask: 409,
    UnknownTaskType: 422,
    Overloaded: 503,
    Unavailable: 503,
    StorageError: 503,
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
        request_id = uuid.uuid4().hex
        log.exception("%s %s failed [request_id=%s]", request.method, request.path, request_id)
        resp = error_response(
            500, "internal_error", f"the server failed (request id {request_id})",
            request_id=request_id,
        )  # fmt: skip
        resp.headers["X-Request-Id"] = request_id
        return resp


async def _end_streams(app: web.Application) -> None:
    """On stop, open event streams end at once instead of holding the server's shutdown."""
    app[SHUTDOWN].set()


def make_app(runtime: Runtime) -> web.Application:
    setting = runtime.config.rate_limit
    # The rate limit first: a refused request costs nothing more.
    chain: list[Middleware] = [errors]
    if setting is not None:
        chain.insert(0, middleware(RateLimiter.from_setting(setting)))
    app = web.Application(middlewares=chain, client_max_size=runtime.config.max_body_bytes)
    app[RUNTIME] = runtime
    app[SHUTDOWN] = asyncio.Event()
    app.on_shutdown.append(_end_streams)
    aiojobs.aiohttp.setup(app)
    app.add_routes(task_routes)
    app.add_routes(system_routes)
    app.add_routes(dead_letter_routes)
    app.add_routes(queue_routes)
    app.add_routes(schedule_routes)
    app.add_routes(journal_routes)
    return app
