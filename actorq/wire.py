"""The API's JSON read back into model values: the inverse of ``render.py``.

The client decodes every answer here, the event stream's framing too, so a change of the wire
format is made in two places only, the render side and this one (issue 12 §4 folds both into
one cattrs converter).
Times arrive as ISO 8601 UTC (``2026-11-27T02:20:52.000000Z``) and become POSIX seconds again;
states and kinds become their enums. An error body ``{"error": {"code", "message", ...}}``
becomes the exception class the node raised.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import Any

import attrs

from actorq.errors import (
    ActorqError,
    BatchItemError,
    DuplicateTask,
    InvalidInput,
    InvalidJson,
    InvalidTransition,
    Overloaded,
    StorageError,
    TaskNotFound,
    Unavailable,
    UnknownTaskType,
)
from actorq.model import Event, EventKind, Task, TaskState

_EPOCH = dt.datetime(1970, 1, 1)
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_BATCH_PREFIX = re.compile(r"task \[\d+\]: ")


@attrs.frozen
class LiveEvent:
    """One item of the live event stream: a committed journal event (without its data) and
    the state, queue and type it left its task in."""

    event: Event
    state: TaskState
    queue: str | None
    type: str | None

    @property
    def task_id(self) -> str:
        return self.event.task_id

    @property
    def kind(self) -> EventKind:
        return self.event.kind


@attrs.frozen
class TaskTypeInfo:
    """A task type the cluster serves, with the defaults a submission inherits."""

    name: str
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None
    nodes: tuple[str, ...]


def posix(text: str) -> float:
    """``render.iso`` undone: POSIX seconds from ISO 8601 UTC with microseconds."""
    when = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return (when - _EPOCH).total_seconds()


def _maybe_posix(text: str | None) -> float | None:
    return None if text is None else posix(text)


def task_from_json(data: Mapping[str, Any]) -> Task:
    return Task(
        id=data["id"],
        type=data["type"],
        queue=data["queue"],
        payload=data.get("payload"),
        priority=data["priority"],
        state=TaskState(data["state"]),
        attempt=data["attempt"],
        max_attempts=data["max_attempts"],
        timeout=data.get("timeout"),
        run_at=posix(data["scheduled_at"]),
        created_at=posix(data["created_at"]),
        updated_at=posix(data["updated_at"]),
        metadata=data.get("metadata") or {},
        idempotency_key=data.get("idempotency_key"),
        result=data.get("result"),
        error=data.get("error"),
        started_at=_maybe_posix(data.get("started_at")),
        finished_at=_maybe_posix(data.get("finished_at")),
        worker=data.get("worker"),
        lease_expires_at=_maybe_posix(data.get("lease_expires_at")),
    )


def _times_out(data: Mapping[str, Any]) -> dict[str, Any]:
    """An event's data with the ``*_at`` times ``render`` showed as ISO back in seconds."""
    return {
        k: posix(v) if k.endswith("_at") and isinstance(v, str) and _ISO.fullmatch(v) else v
        for k, v in data.items()
    }


def event_from_json(data: Mapping[str, Any]) -> Event:
    return Event(
        kind=EventKind(data["kind"]),
        task_id=data["task_id"],
        at=posix(data["at"]),
        node=data["node"],
        data=_times_out(data.get("data") or {}),
        worker=data.get("worker"),
        seq=data.get("seq", 0),
    )


def live_event_from_json(data: Mapping[str, Any]) -> LiveEvent:
    return LiveEvent(
        event=event_from_json(data),
        state=TaskState(data["state"]),
        queue=data.get("queue"),
        type=data.get("type"),
    )


def task_type_from_json(data: Mapping[str, Any]) -> TaskTypeInfo:
    return TaskTypeInfo(
        name=data["name"],
        queue=data["queue"],
        priority=data["priority"],
        max_attempts=data["max_attempts"],
        timeout=data.get("timeout"),
        nodes=tuple(data.get("nodes") or ()),
    )


# -- the event stream -----------------------------------------------------------------------


@attrs.frozen
class SseMessage:
    event: str
    data: str
    id: str | None  # the last id the stream gave, this message's or an earlier one's


async def sse_messages(lines: AsyncIterable[bytes]) -> AsyncIterator[SseMessage]:
    """Server-Sent Events from the stream's lines, as the HTML standard reads them (comments
    and ``retry`` ignored)."""
    event, data, last_id = "message", list[str](), None
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SseMessage(event, "\n".join(data), last_id)
            event, data = "message", []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value


# -- errors --------------------------------------------------------------------------------


def error_from_json(
    status: int,
    body: Any,
    *,
    task_id: str | None = None,
    submitted: Sequence[Mapping[str, Any]] = (),
) -> ActorqError:
    """The exception an error answer stands for, by its ``code``.

    ``task_id`` is the id the request named, ``submitted`` the tasks it submitted: the body
    does not repeat them, and the exceptions carry them. The message is the server's. An
    error of one task of a batch is a ``BatchItemError`` whose ``error`` is the typed one.
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ActorqError(f"HTTP {status}: the server answered without an error body")
    code = str(error.get("code", "error"))
    message = str(error.get("message", code))
    index = error.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        index = None
    item: Mapping[str, Any] = {}
    if index is not None and 0 <= index < len(submitted):
        item = submitted[index]
    elif len(submitted) == 1:
        item = submitted[0]
    exc = _typed(status, code, error, item, task_id)
    if index is None:
        exc.args = (message,)
        return exc
    exc.args = (_BATCH_PREFIX.sub("", message, count=1),)
    batch = BatchItemError(index, exc)
    batch.args = (message,)
    return batch


def _typed(
    status: int, code: str, error: dict[str, Any], item: Mapping[str, Any], task_id: str | None
) -> ActorqError:
    match code:
        case "invalid_json":
            return InvalidJson()
        case "invalid_input":
            return InvalidInput()
        case "task_not_found":
            return TaskNotFound(task_id or "")
        case "invalid_transition":
            return InvalidTransition()
        case "duplicate_idempotency_key":
            holder = error.get("task_id")
            key = item.get("idempotency_key")
            return DuplicateTask(str(key or ""), holder if isinstance(holder, str) else None)
        case "unknown_task_type":
            return UnknownTaskType(str(item.get("type", "")))
        case "overloaded":
            return Overloaded()
        case "storage_error":
            return StorageError()
        case "unavailable" | "not_ready":
            return Unavailable()
    if status == 503:  # a code this client does not know yet, saying "try again later"
        return Unavailable()
    exc = ActorqError()
    exc.code = code
    return exc
