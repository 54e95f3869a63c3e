"""Node routes: health and readiness, statistics, Prometheus metrics, the live event feed
(Server-Sent Events), the OpenAPI document and the dashboard."""

from __future__ import annotations

import asyncio
import json
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from actorq.http.keys import RUNTIME

routes = web.RouteTableDef()
_STATIC = resources.files("actorq.http").joinpath("static")
_SSE_KEEPALIVE = 15.0


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok", "node": request.app[RUNTIME].config.node})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """Ready: the journal answers and the actor system has not failed."""
    runtime = request.app[RUNTIME]
    if runtime.system.failed is not None:
        return web.json_response({"status": "failed"}, status=503)
    head = await runtime.journal.head()
    return web.json_response({"status": "ready", "journal_seq": head.journal_seq})


@routes.get("/api/v1/stats")
async def stats(request: web.Request) -> web.Response:
    return web.json_response(await request.app[RUNTIME].stats())


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[RUNTIME].metrics_registry
    body = generate_latest(registry) if registry is not None else b""
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/api/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Every committed journal event, live, as Server-Sent Events."""
    runtime = request.app[RUNTIME]
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    async with runtime.live_events() as feed:
        while True:
            try:
                item = await asyncio.wait_for(feed.get(), _SSE_KEEPALIVE)
            except TimeoutError:
                await resp.write(b": keepalive\n\n")
                continue
            await resp.write(f"event: {item['kind']}\ndata: {json.dumps(item)}\n\n".encode())
            if item["kind"] == "lagged":
                break
    return resp


@routes.get("/openapi.json")
async def openapi(_: web.Request) -> web.Response:
    return web.Response(
        text=_STATIC.joinpath("openapi.json").read_text(), content_type="application/json"
    )


@routes.get("/")
async def dashboard(_: web.Request) -> web.Response:
    return web.Response(text=_STATIC.joinpath("index.html").read_text(), content_type="text/html")
