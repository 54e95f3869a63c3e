"""Task handlers to serve with ``actorq serve --app tasks:app`` from this directory.

Four kinds of handler: an ``async def``, a plain ``def`` (run in a thread, so it may block),
one whose first attempts fail and are retried on a policy, and one with a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import actorq

# No database_url: ACTORQ_DATABASE_URL, --database-url or actorq.toml say where the journal
# is, and the default is ./actorq.db.
app = actorq.App()


@app.task("greet")
async def greet(payload: dict[str, Any]) -> dict[str, str]:
    return {"greeting": f"hello, {payload['name']}"}


@app.task("checksum")
def checksum(payload: dict[str, Any]) -> dict[str, str]:
    # A plain def runs in a worker thread: blocking here (hashing, a synchronous client)
    # does not stall the node's event loop.
    return {"sha256": hashlib.sha256(payload["text"].encode()).hexdigest()}


class NotReadyYet(Exception):
    """The report is still being made: worth another try later."""


@app.task(
    "fetch_report",
    max_attempts=5,
    # Fixed half a second between attempts; the default is exponential from 1 s with jitter.
    retry=actorq.RetryPolicy(backoff=actorq.Backoff.FIXED, base=0.5, jitter=0),
)
async def fetch_report(payload: dict[str, Any], ctx: actorq.TaskContext) -> dict[str, Any]:
    # Stands in for an upstream that answers only from attempt ``ready_on_attempt`` on.
    if ctx.attempt < payload.get("ready_on_attempt", 2):
        raise NotReadyYet(f"report {payload['report']} is not ready (attempt {ctx.attempt})")
    return {"report": payload["report"], "attempt": ctx.attempt}


@app.task("slow_export", timeout=2, max_attempts=1)
async def slow_export(payload: dict[str, Any]) -> dict[str, float]:
    # Past 2 s the handler is cancelled and the attempt fails as timed out; with one attempt
    # allowed the task is then dead (dead-lettered), to be retried by hand if wanted.
    await asyncio.sleep(payload.get("seconds", 1))
    return {"exported_in": payload.get("seconds", 1)}
