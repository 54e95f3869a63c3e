"""Example task types that ``actorq serve`` loads when no ``--app`` is given, so a new user can
try the queue with curl alone: echo, sleep, fail, flaky and webhook (fenced against request
forgery: see actorq.webhook). ``serve --no-example-types`` loads none of them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from actorq.errors import InvalidInput
from actorq.tasks import Registry, TaskContext, TaskType
from actorq.webhook import make_webhook, parse_allow


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


def builtin_registry(webhook_allow: Sequence[str] | None = None) -> Registry:
    """The example types; ``webhook_allow``: internal addresses the webhook may reach
    (``ACTORQ_WEBHOOK_ALLOW``, see actorq.webhook)."""
    try:
        allow = parse_allow(webhook_allow)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    registry = Registry()
    for task_type in (
        TaskType("echo", echo),
        TaskType("sleep", sleep),
        TaskType("fail", fail),
        TaskType("flaky", flaky, max_attempts=5),
        TaskType("webhook", make_webhook(allow), max_attempts=5, timeout=30),
    ):
        registry.add(task_type)
    return registry
