"""Fixture helpers for tests that run a whole node: a registry of test task types and the
node's settings. Test task types retry fast so retries finish in milliseconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from actorq.builtin import builtin_registry
from actorq.config import Config
from actorq.retry import Backoff, RetryPolicy
from actorq.steering import Snooze
from actorq.tasks import Registry, TaskContext, TaskType

FAST_RETRY = RetryPolicy(Backoff.FIXED, base=0.01, jitter=0.0)


class Gates:
    """Handlers that wait for the test: ``gate`` tasks block until ``open(name)``."""

    def __init__(self) -> None:
        self._gates: dict[str, asyncio.Event] = {}
        self.started: dict[str, asyncio.Event] = {}
        self.cancelled: dict[str, asyncio.Event] = {}
        self.order: list[Any] = []

    def _get(self, table: dict[str, asyncio.Event], name: str) -> asyncio.Event:
        return table.setdefault(name, asyncio.Event())

    def open(self, name: str) -> None:
        self._get(self._gates, name).set()

    async def wait_started(self, name: str, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._get(self.started, name).wait(), timeout)

    async def wait_cancelled(self, name: str, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._get(self.cancelled, name).wait(), timeout)

    async def gate(self, payload: Any) -> str:
        name = payload["gate"]
        self._get(self.started, name).set()
        try:
            await self._get(self._gates, name).wait()
        except asyncio.CancelledError:
            self._get(self.cancelled, name).set()
            raise
        return name

    async def record(self, payload: Any) -> Any:
        self.order.append(payload)
        return payload


def make_registry(gates: Gates) -> Registry:
    # The tests' own local servers are on loopback, which the webhook refuses by default
    # (tests/test_webhook_ssrf.py checks that, with a registry of its own).
    registry = builtin_registry(["127.0.0.1"])

    async def flaky_fast(payload: Any, ctx: TaskContext) -> int:
        if ctx.attempt <= int(payload["fail_times"]):
            raise RuntimeError(f"planned failure {ctx.attempt}")
        return ctx.attempt

    async def fail_fast(payload: Any) -> None:
        raise ValueError(payload or "boom")

    async def slow(payload: Any) -> None:
        await asyncio.sleep(float(payload["seconds"]))

    def sync_add(payload: Any) -> int:
        return int(payload["a"]) + int(payload["b"])

    async def snooze_until(payload: Any, ctx: TaskContext) -> int:
        """Snoozes until the POSIX time ``until``, then answers its attempt number."""
        wait = float(payload["until"]) - time.time()
        if wait > 0:
            raise Snooze(wait, "not due yet")
        return ctx.attempt

    for task_type in (
        TaskType("gate", gates.gate, max_attempts=1),
        TaskType("record", gates.record),
        TaskType("flaky_fast", flaky_fast, max_attempts=5, retry=FAST_RETRY),
        TaskType("fail_fast", fail_fast, max_attempts=3, retry=FAST_RETRY),
        TaskType("slow", slow, max_attempts=2, retry=FAST_RETRY),
        TaskType("sync_add", sync_add),
        TaskType("snooze_until", snooze_until),
    ):
        registry.add(task_type)
    return registry


def node_config(database_url: str, **overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "database_url": database_url,
        "concurrency": 4,
        "lease_seconds": 5.0,
        "poll_seconds": 0.5,
        "shutdown_grace": 2.0,
        "node": "test-node",
    }
    settings.update(overrides)
    return Config(**settings)
