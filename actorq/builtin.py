"""Example task types that ``actorq serve`` loads when no ``--app`` is given, so a new user can
try the queue with curl alone: echo, sleep, fail, flaky and webhook."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from actorq.errors import InvalidInput
from actorq.tasks import Registry, TaskContext, TaskType


async def echo(payload: Any) -> Any:
    """Returns its payload."""
    return payload


async def sleep(payload: Any) -> dict[str, float]:
    """Sleeps ``payload["seconds"]`` (default 1), then reports how long."""
    seconds = float((payload or {}).get("seconds", 1.0))
    await asyncio.sleep(seconds)
    return {"slept": seconds}


class ExampleFailure(Exception):
    """Raised on purpose by the ``fail`` and ``flaky`` examples."""


async def fail(payload: Any) -> None:
    """Always raises."""
    message = (payload or {}).get("message", "this task always fails")
    raise ExampleFailure(message)


async def flaky(payload: Any, ctx: TaskContext) -> dict[str, int]:
    """Fails the first ``payload["fail_times"]`` attempts, then succeeds."""
    fail_times = int((payload or {}).get("fail_times", 1))
    if ctx.attempt <= fail_times:
        raise ExampleFailure(f"attempt {ctx.attempt} of {fail_times} planned failures")
    return {"succeeded_on_attempt": ctx.attempt}


async def webhook(payload: Any) -> dict[str, Any]:
    """POSTs ``payload["body"]`` as JSON to ``payload["url"]``; a non-2xx answer fails."""
    if not isinstance(payload, dict) or not isinstance(payload.get("url"), str):
        raise InvalidInput("webhook needs a payload {'url': ..., 'body': ...}")
    timeout = aiohttp.ClientTimeout(total=float(payload.get("timeout", 10)))
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(
            payload["url"], json=payload.get("body"), headers=payload.get("headers") or {}
        ) as resp,  # fmt: skip
    ):
        text = await resp.text()
        if resp.status >= 300:
            raise ExampleFailure(f"webhook answered {resp.status}: {text[:200]}")
        return {"status": resp.status, "body": text[:1000]}


def builtin_registry() -> Registry:
    registry = Registry()
    for task_type in (
        TaskType("echo", echo),
        TaskType("sleep", sleep),
        TaskType("fail", fail),
        TaskType("flaky", flaky, max_attempts=5),
        TaskType("webhook", webhook, max_attempts=5, timeout=30),
    ):
        registry.add(task_type)
    return registry
