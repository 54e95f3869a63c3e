"""A web app that hands slow work to actorq and answers at once.

``POST /signup`` enqueues a ``send_welcome_email`` task and answers 202 with its id, waiting
for nothing but the task's durable record. This process runs no node: ``App.enqueue`` writes
the journal directly, and a worker elsewhere runs the task. ``GET /signup/{task_id}`` reads
the task's state back. Both processes find the database in ``ACTORQ_DATABASE_URL`` (or
``actorq.toml``; default ``./actorq.db``)::

    actorq worker --app web_app:app       # runs the tasks
    python web_app.py --port 8000         # the web app
    curl -s -X POST localhost:8000/signup -d '{"email": "ada@example.com"}'
"""

from __future__ import annotations

import argparse
from typing import Any

from aiohttp import web

import actorq

app = actorq.App()


@app.task("send_welcome_email", max_attempts=5, timeout=30)
async def send_welcome_email(payload: dict[str, Any]) -> dict[str, str]:
    # A real one talks to a mail server; a failure here is retried, not the web request's.
    return {"sent_to": payload["email"]}


routes = web.RouteTableDef()


@routes.post("/signup")
async def signup(request: web.Request) -> web.Response:
    body = await request.json()
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or "@" not in email:
        raise web.HTTPBadRequest(text="an email is required")
    # ... store the user in your own database here ...
    task = await app.enqueue("send_welcome_email", {"email": email})
    return web.json_response({"task_id": task.id}, status=202)


@routes.get("/signup/{task_id}")
async def signup_status(request: web.Request) -> web.Response:
    try:
        task = await app.get(request.match_info["task_id"])
    except actorq.TaskNotFound:
        raise web.HTTPNotFound(text="no such task") from None
    return web.json_response({"state": task.state, "result": task.result, "error": task.error})


async def close_journal(_: web.Application) -> None:
    await app.stop()  # closes the App's connection to the journal


def make_web_app() -> web.Application:
    web_app = web.Application()
    web_app.add_routes(routes)
    web_app.on_cleanup.append(close_journal)
    return web_app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    web.run_app(make_web_app(), host=args.host, port=args.port)
