"""Node routes: health and readiness, statistics, the registered task types, Prometheus
metrics, the OpenAPI document and the dashboard (the live streams are in ``streams.py``)."""

from __future__ import annotations

import functools
import logging
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from actorq.http.keys import RUNTIME
from actorq.retry import policy_json

log = logging.getLogger("actorq.http")
routes = web.RouteTableDef()
_STATIC = resources.files("actorq.http").joinpath("static")
# The dashboard's files besides index.html; nothing else under static/ is served.
_ASSETS = {
    "app.js": "text/javascript",
    "audit.js": "text/javascript",
    "dead_letters.js": "text/javascript",
    "queues.js": "text/javascript",
    "nodes.js": "text/javascript",
    "style.css": "text/css",
}
# The dashboard loads nothing from elsewhere and runs no inline script, so a task's payload or
# error that slipped into the page as markup still could not run.
_DASHBOARD_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


@functools.cache
def _static(name: str) -> str:
    """A file of the package's static/: read once, it does not change while we run."""
    return _STATIC.joinpath(name).read_text()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok", "node": request.app[RUNTIME].config.node})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """Ready: this node can claim and write (see ``Runtime.readiness``); else 503, saying why."""
    readiness = await request.app[RUNTIME].readiness()
    if not readiness.ok:
        message = "not ready: " + "; ".join(readiness.reasons)
        body = {"error": {"code": "not_ready", "message": message}}
        return web.json_response(body, status=503)
    return web.json_response({"status": "ready", "journal_seq": readiness.journal_seq})


@routes.get("/api/v1/stats")
async def stats(request: web.Request) -> web.Response:
    return web.json_response(await request.app[RUNTIME].stats())


@routes.get("/api/v1/types")
async def task_types(request: web.Request) -> web.Response:
    """The task types the cluster serves (this node's own included): each with the defaults
    a submission inherits and the live nodes serving it."""
    cluster = await request.app[RUNTIME].cluster()
    return web.json_response(
        {
            "types": [
                {
                    "name": name,
                    "queue": t.defaults.queue,
                    "priority": t.defaults.priority,
                    "max_attempts": t.defaults.max_attempts,
                    "timeout": t.defaults.timeout,
                    "retry": None if t.defaults.retry is None else policy_json(t.defaults.retry),
                    "nodes": list(t.nodes),
                }
                for name, t in cluster.types.items()
            ]
        }
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = await request.app[RUNTIME].metrics()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/openapi.json")
async def openapi(_: web.Request) -> web.Response:
    return web.Response(text=_static("openapi.json"), content_type="application/json")


@routes.get("/")
async def dashboard(_: web.Request) -> web.Response:
    return web.Response(
        text=_static("index.html"),
        content_type="text/html",
        headers={"Content-Security-Policy": _DASHBOARD_CSP, "Cache-Control": "no-cache"},
    )


@routes.get("/static/{name}")
async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = _ASSETS.get(name)
    if kind is None:
        raise web.HTTPNotFound(text=f"no dashboard file {name!r}")
    return web.Response(
        text=_static(name),
        content_type=kind,
        headers={"Cache-Control": "no-cache"},
    )
