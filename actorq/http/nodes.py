"""Node routes: the nodes of the cluster (live ones and those recently gone) and an operator's
commands to one of them: pause, resume, drain.

A command is recorded in the database, not sent to a process: it works whichever node the
request lands on, and the target obeys it at once (the same node, or a notice on PostgreSQL)
or at its next heartbeat.
"""

from __future__ import annotations

import aiojobs.aiohttp
from aiohttp import web

from actorq.http.keys import RUNTIME

routes = web.RouteTableDef()


@routes.get("/api/v1/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    return web.json_response({"nodes": await request.app[RUNTIME].nodes()})


@routes.get("/api/v1/nodes/{node}")
async def get_node(request: web.Request) -> web.Response:
    return web.json_response(await request.app[RUNTIME].node(request.match_info["node"]))


async def _command(request: web.Request, command: str) -> web.Response:
    node = request.match_info["node"]
    return web.json_response(await request.app[RUNTIME].command_node(node, command))


@routes.post("/api/v1/nodes/{node}/pause")
@aiojobs.aiohttp.atomic
async def pause(request: web.Request) -> web.Response:
    """Take no new work; running tasks finish, held ones go back to their queues."""
    return await _command(request, "pause")


@routes.post("/api/v1/nodes/{node}/resume")
@aiojobs.aiohttp.atomic
async def resume(request: web.Request) -> web.Response:
    return await _command(request, "resume")


@routes.post("/api/v1/nodes/{node}/drain")
@aiojobs.aiohttp.atomic
async def drain(request: web.Request) -> web.Response:
    """Take no new work; once running tasks finish, the node's process stops (exit 0)."""
    return await _command(request, "drain")
