"""Cross-origin calls from browsers (CORS): off unless ``ACTORQ_CORS_ORIGINS`` lists origins.

A page served from an allowed origin may call the API with its token (``Authorization``) and
read the answers, errors included (a 401 must be readable for the page to ask for a token);
its preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here, before
routing. A request from any other origin gets no CORS header, so the browser keeps the
answer from the page. No cookies are involved (tokens travel as a header), so credentials
are never allowed.

Written here rather than with aiohttp-cors: that library registers each route and adds an
OPTIONS route to every resource, which changes every 405's ``Allow`` and the route list
that the OpenAPI test compares with the document; what is needed is a few headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ANY = "*"
METHODS = "GET, POST, PATCH, DELETE"
HEADERS = "Authorization, Content-Type"
EXPOSED = "Retry-After, X-Request-Id, WWW-Authenticate"
MAX_AGE = "600"  # seconds a browser may keep a preflight's answer


def middleware(origins: Collection[str]) -> Middleware:
    allowed = {o.rstrip("/") for o in origins}

    def allows(origin: str | None) -> bool:
        return origin is not None and (ANY in allowed or origin in allowed)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        preflight = (
            request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        )
        if preflight:
            if not allows(origin):
                message = f"origin {origin!r} may not call this API"
                body = {"error": {"code": "origin_not_allowed", "message": message}}
                return web.json_response(body, status=403)
            resp: web.StreamResponse = web.Response(status=204)
            resp.headers["Access-Control-Allow-Methods"] = METHODS
            resp.headers["Access-Control-Allow-Headers"] = HEADERS
            resp.headers["Access-Control-Max-Age"] = MAX_AGE
        else:
            resp = await handler(request)
        if allows(origin) and not resp.prepared:
            resp.headers["Access-Control-Allow-Origin"] = ANY if ANY in allowed else str(origin)
            resp.headers["Access-Control-Expose-Headers"] = EXPOSED
        resp.headers.add("Vary", "Origin")
        return resp

    return cors
