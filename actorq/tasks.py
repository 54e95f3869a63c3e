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
from actorq.errors import InvalidInput, UnknownTaskType
from actorq.model import NewTask, Schedule, Task
from actorq.nodes import Catalog
from actorq.retry import NO_OVERRIDES, RetryDefaults, RetryPolicy
from actorq.submission import common_shape

Handler = Callable[..., Any]


MAX_PROGRESS_MESSAGE = 1000  # characters


def check_progress(fraction: object, message: object) -> tuple[float, str | None]:
    """A progress report as the journal keeps it; ``InvalidInput`` saying what is wrong."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise InvalidInput(f"progress fraction must be a number from 0 to 1, got {fraction!r}")
    if not 0.0 <= fraction <= 1.0:  # NaN fails both comparisons
        raise InvalidInput(f"progress fraction must be from 0 to 1, got {fraction!r}")
    if message is not None and not isinstance(message, str):
        raise InvalidInput(f"progress message must be a string or None, got {message!r}")
    if message is not None and len(message) > MAX_PROGRESS_MESSAGE:
        raise InvalidInput(f"progress message is longer than {MAX_PROGRESS_MESSAGE} characters")
    return float(fraction), None if message is None else message.replace("\x00", "\ufffd")


@attrs.frozen
class TaskContext:
    """What a handler may want to know about the attempt it runs, and how it reports its
    progress."""

    task: Task
    node: str
    # Takes a checked report; the worker's ``ProgressWriter`` (None: reports go nowhere).
    report: Callable[[float, str | None], None] | None = None

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Say how far the handler got: ``fraction`` from 0 to 1, and a short message.

        A plain call (no ``await``) from an ``async def`` handler and a threaded ``def`` one
        alike. Journaled as a ``progress`` event at most once a second per task: the last
        report of a burst is written when the second is up, or as the handler ends. A bad
        value raises ``InvalidInput`` in the handler."""
        checked = check_progress(fraction, message)
        if self.report is not None:
            self.report(*checked)

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
    """Task types by name, and the schedules an App declares with them (``@app.periodic``)."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}
        self._schedules: dict[str, Schedule] = {}

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

    def name_of(self, handler: Handler) -> str | None:
        """The task type ``handler`` is registered as, if any."""
        return next((t.name for t in self._types.values() if t.handler is handler), None)

    def declare(self, schedule: Schedule) -> None:
        if schedule.name in self._schedules:
            raise ValueError(f"schedule {schedule.name!r} is declared twice")
        self._schedules[schedule.name] = schedule

    def schedules(self) -> list[Schedule]:
        """The declared schedules, which a node saves as it starts."""
        return list(self._schedules.values())


def parse_submission(
    data: Any, catalog: Catalog, now: float, retry: RetryDefaults = NO_OVERRIDES
) -> NewTask:
    """A validated ``NewTask`` from a JSON object, with the task type's defaults filled in
    (the node's own types, then the cluster's: ``actorq.nodes``) and its retry policy chosen
    (``RetryDefaults.choose``: its own, its queue's, its type's, the node's)."""
    if type(data) is dict:
        common = common_shape(data, catalog.get, now, retry)
        if common is not None:
            return common
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
