"""The aiohttp application: routes, the error middleware, and the runtime in app state.

Domain errors become JSON ``{"error": {"code", "message"}}`` with the status they deserve;
nothing below this layer knows about HTTP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

import aiojobs.aiohttp
from aiohttp import web

from actorq.errors import (
    ActorqError,
    DuplicateTask,
    InvalidInput,
    InvalidTransition,
    Overloaded,
    StorageError,
    TaskNotFound,
    UnknownTaskType,
)
from actorq.http.keys import RUNTIME
from actorq.http.system import routes as system_routes
from actorq.http.tasks import routes as task_routes
from actorq.runtime import Runtime

log = logging.getLogger("actorq.http")

_STATUS: dict[type[ActorqError], int] = {
    InvalidInput: 400,
    TaskNotFound: 404,
    InvalidTransition: 409,
    DuplicateTask: 409,
    UnknownTaskType: 422,
    Overloaded: 503,
    StorageError: 503,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ActorqError as exc:
        status = next((s for t, s in _STATUS.items() if isinstance(exc, t)), 500)
        return error_response(status, exc.code, str(exc))
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "payload_too_large", exc.text or "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, code, exc.text or exc.reason)
    except json.JSONDecodeError as exc:
        return error_response(400, "invalid_json", f"request body is not valid JSON: {exc}")


def make_app(runtime: Runtime) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=runtime.config.max_body_bytes)
    app[RUNTIME] = runtime
    aiojobs.aiohttp.setup(app)
    app.add_routes(task_routes)
    app.add_routes(system_routes)
    return app
