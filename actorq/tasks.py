"""Task types: the registry of handlers, how a handler is called, and what a submission may say.

A handler is ``async def`` (run on the event loop) or plain ``def`` (run in a thread so it
cannot stall the runtime). It takes the payload, and optionally a ``TaskContext`` as second
argument. Submissions from HTTP and from Python are checked here, by one set of rules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from actorq.errors import InvalidInput, UnknownTaskType
from actorq.lifecycle import RetryPolicy
from actorq.model import NewTask, Task
from actorq.nodes import Catalog

Handler = Callable[..., Any]
MAX_ATTEMPTS_LIMIT = 1000


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
    retry: RetryPolicy = RetryPolicy()
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


_FIELDS = frozenset(
    {
        "type", "payload", "queue", "priority", "max_attempts", "timeout", "delay",
        "scheduled_at", "metadata", "idempotency_key",
    }
)  # fmt: skip


def _number(data: Mapping[str, Any], name: str, *, integer: bool = False) -> Any:
    value = data.get(name)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"field {name!r} must be {kind}, got {value!r}")
    return value


def _string(data: Mapping[str, Any], name: str, max_len: int = 200) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidInput(f"field {name!r} must be a non-empty string of at most {max_len}")
    return value


def parse_time(value: Any, name: str = "scheduled_at") -> float:
    """ISO 8601 (naive means UTC) or a POSIX timestamp, as POSIX seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return when.timestamp()
    raise InvalidInput(f"field {name!r} must be an ISO 8601 time, got {value!r}")


def _run_at(data: Mapping[str, Any], now: float) -> float | None:
    delay = _number(data, "delay")
    when = data.get("scheduled_at")
    if delay is not None and when is not None:
        raise InvalidInput("give either 'delay' or 'scheduled_at', not both")
    if delay is not None:
        if delay < 0:
            raise InvalidInput("field 'delay' must not be negative")
        return now + float(delay) if delay > 0 else None
    return None if when is None else parse_time(when)


def parse_submission(data: Any, catalog: Catalog, now: float) -> NewTask:
    """A validated ``NewTask`` from a JSON object, with the task type's defaults filled in."""
    if not isinstance(data, dict):
        raise InvalidInput("a task must be a JSON object")
    unknown = set(data) - _FIELDS
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
    name = _string(data, "type")
    if name is None:
        raise InvalidInput("field 'type' is required")
    task_type = catalog.get(name)  # the node's own types, then the cluster's (actorq.nodes)
    max_attempts = _number(data, "max_attempts", integer=True)
    if max_attempts is not None and not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise InvalidInput(f"field 'max_attempts' must be between 1 and {MAX_ATTEMPTS_LIMIT}")
    timeout = _number(data, "timeout")
    if timeout is not None and timeout <= 0:
        raise InvalidInput("field 'timeout' must be positive")
    priority = _number(data, "priority", integer=True)
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidInput("field 'metadata' must be a JSON object")
    return NewTask(
        type=name,
        payload=data.get("payload"),
        queue=_string(data, "queue") or task_type.queue,
        priority=task_type.priority if priority is None else priority,
        max_attempts=task_type.max_attempts if max_attempts is None else max_attempts,
        timeout=task_type.timeout if timeout is None else float(timeout),
        run_at=_run_at(data, now),
        metadata=metadata,
        idempotency_key=_string(data, "idempotency_key"),
    )


def task_decorator(
    registry: Registry,
    name: str | None,
    **options: Any,
) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        registry.add(TaskType(name or fn.__name__, fn, **options))
        return fn

    return register
