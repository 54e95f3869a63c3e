"""Task types: the registry of handlers, how a handler is called, and what a submission may say.

A handler is ``async def`` (run on the event loop) or plain ``def`` (run in a thread so it
cannot stall the runtime). It takes the payload, and optionally a ``TaskContext`` as second
argument. Submissions from HTTP and from Python are checked by one set of rules, through
the wire format's converter (``actorq.wire``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from actorq import wire
from actorq.errors import UnknownTaskType
from actorq.model import NewTask, Task
from actorq.nodes import Catalog
from actorq.retry import NO_OVERRIDES, RetryDefaults, RetryPolicy

Handler = Callable[..., Any]


@attrs.frozen
class TaskContext:
    """What a handler may want to know about the attempt it runs."""

    task: Task
    node: str

    @property
    def attempt(self) -> int:
        return self.task.attempt

    @property
    def task_id(self) -> str:
        return self.task.id


@attrs.frozen
class TaskType:
    name: str
    handler: Handler
    max_attempts: int = 3
    timeout: float | None = None
    queue: str = "default"
    priority: int = 0
    retry: RetryPolicy | None = None  # None: the queue's or the node's (see actorq.retry)
    # Read from the signature once, at registration: calls happen for every task.
    wants_context: bool = attrs.field(init=False)
    is_async: bool = attrs.field(init=False)

    @wants_context.default
    def _wants_context(self) -> bool:
        params = [
            p
            for p in inspect.signature(self.handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        return len(params) >= 2

    @is_async.default
    def _is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def call(self, payload: Any, ctx: TaskContext) -> Awaitable[Any]:
        args = (payload, ctx) if self.wants_context else (payload,)
        if self.is_async:
            coro: Awaitable[Any] = self.handler(*args)
            return coro
        return asyncio.to_thread(self.handler, *args)


class Registry:
    """Task types by name."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}

    def add(self, task_type: TaskType) -> None:
        if task_type.name in self._types:
            raise ValueError(f"task type {task_type.name!r} is registered twice")
        self._types[task_type.name] = task_type

    def get(self, name: str) -> TaskType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownTaskType(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)


def parse_submission(
    data: Any, catalog: Catalog, now: float, retry: RetryDefaults = NO_OVERRIDES
) -> NewTask:
    """A validated ``NewTask`` from a JSON object, with the task type's defaults filled in
    (the node's own types, then the cluster's: ``actorq.nodes``) and its retry policy chosen
    (``RetryDefaults.choose``: its own, its queue's, its type's, the node's)."""
    return wire.new_task(data, catalog.get, now, retry)


def task_decorator(
    registry: Registry,
    name: str | None,
    **options: Any,
) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        registry.add(TaskType(name or fn.__name__, fn, **options))
        return fn

    return register
