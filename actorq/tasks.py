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
import re
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

# The documented ranges of a submission (README, openapi.json): what both journals and the
# renderer hold. A value outside them is refused before it reaches a shared commit.
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1
TIMEOUT_MAX = 31_536_000  # one year
DELAY_MAX = 315_360_000  # ten years; scheduled_at lies at most this far ahead
MAX_TEXT = 200
MAX_DEPTH = 64  # of payload and metadata
# Control characters in names break logs and terminals; NUL and lone surrogates cannot be
# stored by PostgreSQL (nor encoded as UTF-8 at all, for surrogates).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _shown(value: Any) -> str:
    """``value`` for an error message: short, and never failing (a 5000-digit int...)."""
    try:
        text = repr(value)
    except ValueError:
        return "a number too large to show"
    return text if len(text) <= 60 else text[:57] + "..."


def _given(value: Any, kind: Any) -> str:
    """What was given, for a value of the wrong type; a number out of range is not repeated
    (the range says enough, and a huge one only makes the message long)."""
    if isinstance(value, kind) and not isinstance(value, bool):
        return ""
    return f", got {_shown(value)}"


def _integer(data: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    """An integer in [low, high]; an integral float (5.0) counts, as JSON does not tell them
    apart."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"field {name!r} must be an integer from {low} to {high}"
                           + _given(value, int))  # fmt: skip
    return value


def _number(data: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    """A finite number in [low, high]."""
    value = data.get(name)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not low <= value <= high:  # NaN fails every comparison
        raise InvalidInput(f"field {name!r} must be a number from {low} to {high}"
                           + _given(value, int | float))  # fmt: skip
    return float(value)


def _text(data: Mapping[str, Any], name: str, forbidden: re.Pattern[str]) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
        raise InvalidInput(f"field {name!r} must be a string of 1 to {MAX_TEXT} characters")
    if forbidden.search(value):
        what = "control characters" if forbidden is _CONTROL else "NUL characters"
        raise InvalidInput(f"field {name!r} must not hold {what} or lone surrogates")
    return value


def check_json(value: Any, name: str) -> None:
    """Refuse what the journal cannot store faithfully: nesting deeper than ``MAX_DEPTH``,
    NaN and infinities, lone surrogates, and anything that is not JSON at all."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise InvalidInput(f"field {name!r} is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str) or _SURROGATE.search(key):
                        raise InvalidInput(f"field {name!r} holds a key JSON cannot carry")
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            if _SURROGATE.search(item):
                raise InvalidInput(f"field {name!r} holds a lone surrogate")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(f"field {name!r} holds NaN or an infinity")
        elif item is not None and not isinstance(item, int):  # bool is an int
            raise InvalidInput(f"field {name!r} holds a {type(item).__name__}, not JSON")


def parse_time(value: Any, name: str = "scheduled_at") -> float:
    """ISO 8601 (naive means UTC) or a POSIX timestamp, as POSIX seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
        if math.isfinite(seconds):
            return seconds
        raise InvalidInput(f"field {name!r} must be a finite time, got {_shown(value)}")
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return when.timestamp()
        except (ValueError, OverflowError):
            pass
    raise InvalidInput(f"field {name!r} must be an ISO 8601 time, got {_shown(value)}")


def _run_at(data: Mapping[str, Any], now: float) -> float | None:
    """When the task is due; None means now. A time in the past means now."""
    delay = _number(data, "delay", 0, DELAY_MAX)
    when = data.get("scheduled_at")
    if delay is not None and when is not None:
        raise InvalidInput("give either 'delay' or 'scheduled_at', not both")
    if delay is not None:
        return now + delay if delay > 0 else None
    if when is None:
        return None
    at = parse_time(when)
    if not 0 <= at <= now + DELAY_MAX:
        raise InvalidInput(
            "field 'scheduled_at' must lie between 1970-01-01T00:00:00Z and ten years from now"
        )
    return at if at > now else None


def parse_submission(data: Any, catalog: Catalog, now: float) -> NewTask:
    """A validated ``NewTask`` from a JSON object, with the task type's defaults filled in."""
    if not isinstance(data, dict):
        raise InvalidInput("a task must be a JSON object")
    unknown = set(data) - _FIELDS
    if unknown:
        names = ", ".join(sorted(map(str, unknown)))
        raise InvalidInput(f"unknown field(s): {names[:MAX_TEXT]}")
    name = _text(data, "type", _CONTROL)
    if name is None:
        raise InvalidInput("field 'type' is required")
    task_type = catalog.get(name)  # the node's own types, then the cluster's (actorq.nodes)
    max_attempts = _integer(data, "max_attempts", 1, MAX_ATTEMPTS_LIMIT)
    timeout = _number(data, "timeout", 0, TIMEOUT_MAX)
    if timeout == 0:
        raise InvalidInput("field 'timeout' must be positive")
    priority = _integer(data, "priority", PRIORITY_MIN, PRIORITY_MAX)
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidInput("field 'metadata' must be a JSON object")
    check_json(metadata, "metadata")
    payload = data.get("payload")
    check_json(payload, "payload")
    return NewTask(
        type=name,
        payload=payload,
        queue=_text(data, "queue", _CONTROL) or task_type.queue,
        priority=task_type.priority if priority is None else priority,
        max_attempts=task_type.max_attempts if max_attempts is None else max_attempts,
        timeout=task_type.timeout if timeout is None else timeout,
        run_at=_run_at(data, now),
        metadata=metadata,
        idempotency_key=_text(data, "idempotency_key", _UNSTORABLE),
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
