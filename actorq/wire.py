"""The API's wire format, from one place: one cattrs converter for what goes out and comes in.

It structures a submission into a checked ``NewTask`` (each field against the range the
README and openapi.json document, its errors worded as the API's 400 messages), unstructures
tasks and events into the API's JSON, and structures that JSON back for the client. Times are
the fields the model marks ``Instant``: POSIX seconds inside, ISO 8601 UTC with six fractional
digits and ``Z`` on the wire (``2026-11-27T02:20:52.000000Z``), through one pair of hooks.
The client's other concerns at the edge live here too: the event stream's framing, and error
bodies turned back into the exception classes the node raised.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import operator
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError, ForbiddenExtraKeysError
from cattrs.fns import identity
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from actorq.errors import (
    ActorqError,
    BatchItemError,
    DuplicateSchedule,
    DuplicateTask,
    DuplicateToken,
    Forbidden,
    InvalidInput,
    InvalidJson,
    InvalidTransition,
    NodeNotFound,
    Overloaded,
    QueueFull,
    QueueNotFound,
    RateLimited,
    ScheduleNotFound,
    StorageError,
    TaskExpired,
    TaskNotFound,
    TaskPurged,
    TokenNotFound,
    Unauthorized,
    Unavailable,
    UnknownTaskType,
)
from actorq.model import (
    Event,
    EventKind,
    Instant,
    NewTask,
    Schedule,
    Task,
    TaskState,
    TypeDefaults,
)
from actorq.retry import NO_OVERRIDES, RetryDefaults, RetryPolicy, policy_from_json, policy_json
from actorq.submission import MAX_TEXT, RULE, FieldError, Submission

_EPOCH = dt.datetime(1970, 1, 1)
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_BATCH_PREFIX = re.compile(r"task \[\d+\]: ")

# -- times ---------------------------------------------------------------------------------

# What a datetime can hold. A stored time outside it (a row written before submissions were
# checked) is shown at the nearest end instead of failing every read that includes it.
_LOWEST = dt.datetime.min
_HIGHEST = dt.datetime.max


def iso(ts: float | None) -> str | None:
    """``ts`` (POSIX seconds) as ISO 8601 UTC with microseconds; never raises for a number.

    NaN is shown as the epoch, values beyond what a datetime holds as its first or last instant.
    """
    if ts is None:
        return None
    try:
        when = _EPOCH + dt.timedelta(seconds=ts)
    except (OverflowError, ValueError):
        when = _EPOCH if math.isnan(ts) else _HIGHEST if ts > 0 else _LOWEST
    return when.isoformat(timespec="microseconds") + "Z"


def posix(text: str) -> float:
    """``iso`` undone: POSIX seconds from ISO 8601 UTC with microseconds."""
    when = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return (when - _EPOCH).total_seconds()


def _maybe_posix(text: str | None, _: Any = None) -> float | None:
    return None if text is None else posix(text)


def _is_time(key: str, value: Any) -> bool:
    return key.endswith("_at") and isinstance(value, int | float) and not isinstance(value, bool)


def _times_in(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data with its ``*_at`` times (run_at, retry_at, ...) rendered as ISO."""
    if not any(_is_time(k, v) for k, v in data.items()):
        return data
    return {k: iso(v) if _is_time(k, v) else v for k, v in data.items()}


def _times_out(data: Mapping[str, Any] | None, _: Any = None) -> dict[str, Any]:
    """An event's data with the ``*_at`` times ``_times_in`` showed as ISO back in seconds."""
    return {
        k: posix(v) if k.endswith("_at") and isinstance(v, str) and _ISO.fullmatch(v) else v
        for k, v in (data or {}).items()
    }


def new_task(
    data: Any,
    defaults_of: Callable[[str], TypeDefaults],
    now: float,
    retry: RetryDefaults = NO_OVERRIDES,
) -> NewTask:
    """A checked ``NewTask`` from a submission's JSON, with its type's defaults (``defaults_of``
    raises ``UnknownTaskType``) filled in; a refused one raises ``InvalidInput`` naming the
    field."""
    if not isinstance(data, dict):
        raise InvalidInput("a task must be a JSON object")
    try:
        submission = _structure_submission(data, Submission)
    except ClassValidationError as exc:
        raise _refusal(exc, data, defaults_of) from None
    return submission.new_task(defaults_of(submission.type), now, retry)


def _refusal(
    exc: ClassValidationError, data: Mapping[str, Any], defaults_of: Callable[[str], Any]
) -> Exception:
    """The API's message for a refused submission: unknown fields first, then the type (an
    unknown one is a 422 of its own), then the first refused field in the document's order."""
    by_field: dict[str, BaseException] = {}
    for error in exc.exceptions:
        if isinstance(error, ForbiddenExtraKeysError):
            names = ", ".join(sorted(map(str, error.extra_fields)))
            return InvalidInput(f"unknown field(s): {names[:MAX_TEXT]}")
        for note in getattr(error, "__notes__", ()):
            if isinstance(note, AttributeValidationNote):
                by_field.setdefault(note.name, error)
    if "type" not in by_field:
        defaults_of(data["type"])  # raises UnknownTaskType
    for field in attrs.fields(Submission):
        refused = by_field.get(field.name)
        if isinstance(refused, KeyError):
            return InvalidInput(f"field {field.name!r} is required")
        if isinstance(refused, FieldError):
            return InvalidInput(f"field {field.name!r} {refused}")
    return exc  # not a refusal this module words: a bug, shown as such


# -- the converter -------------------------------------------------------------------------


def _is_instant(t: Any) -> bool:
    return bool(t == Instant or t == Instant | None)


# Values the model already holds as JSON: passed through as they are, not copied.
_JSON_TYPES = frozenset({Any, dict[str, Any], str | None, int | None, float | None})


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_unstructure_hook_func(lambda t: t in _JSON_TYPES, identity)
    conv.register_structure_hook_func(lambda t: t in _JSON_TYPES, lambda v, _: v)
    conv.register_unstructure_hook_func(_is_instant, iso)
    # A StrEnum is a str, and cattrs would send the member itself: send its plain value.
    conv.register_unstructure_hook(enum.StrEnum, operator.attrgetter("value"))
    conv.register_structure_hook_func(_is_instant, _maybe_posix)
    conv.register_unstructure_hook(RetryPolicy, policy_json)
    conv.register_structure_hook(RetryPolicy, lambda v, _: policy_from_json(v))
    # The API calls run_at scheduled_at; seq (of the last event applied) stays inside.
    task: dict[str, Any] = {"seq": override(omit=True), "run_at": override(rename="scheduled_at")}
    conv.register_unstructure_hook(Task, make_dict_unstructure_fn(Task, conv, **task))
    conv.register_structure_hook(Task, make_dict_structure_fn(Task, conv, **task))
    data = override(unstruct_hook=_times_in, struct_hook=_times_out)
    conv.register_unstructure_hook(Event, make_dict_unstructure_fn(Event, conv, data=data))
    conv.register_structure_hook(Event, make_dict_structure_fn(Event, conv, data=data))
    # A schedule's anchor and seq are its own bookkeeping; the API shows its ticks.
    inner: dict[str, Any] = {"seq": override(omit=True), "anchor": override(omit=True)}
    conv.register_unstructure_hook(Schedule, make_dict_unstructure_fn(Schedule, conv, **inner))
    conv.register_structure_hook(Schedule, make_dict_structure_fn(Schedule, conv, **inner))
    return conv


converter: Final = _make_converter()
"""The one converter: configured once, here, and never changed after."""

# Each field structured by its own rule (actorq.submission), in one generated function.
_rules: dict[str, Any] = {
    a.name: override(struct_hook=a.metadata[RULE].structure) for a in attrs.fields(Submission)
}
_structure_submission = make_dict_structure_fn(
    Submission,
    converter,
    _cattrs_forbid_extra_keys=True,
    _cattrs_detailed_validation=True,  # each error's note names its field for the message
    **_rules,
)
_unstructure_task = converter.get_unstructure_hook(Task)
_unstructure_event = converter.get_unstructure_hook(Event)
_structure_task = converter.get_structure_hook(Task)
_structure_event = converter.get_structure_hook(Event)


def task_json(task: Task) -> dict[str, Any]:
    result: dict[str, Any] = _unstructure_task(task)
    return result


def event_json(event: Event) -> dict[str, Any]:
    result: dict[str, Any] = _unstructure_event(event)
    return result


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    result: dict[str, Any] = converter.unstructure(schedule, Schedule)
    return result


def schedule_from_json(data: Mapping[str, Any]) -> Schedule:
    schedule: Schedule = converter.structure(data, Schedule)
    return schedule


def task_from_json(data: Mapping[str, Any]) -> Task:
    task: Task = _structure_task(data, Task)
    return task


def event_from_json(data: Mapping[str, Any]) -> Event:
    event: Event = _structure_event(data, Event)
    return event


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
    retry: RetryPolicy | None = None  # None: the queue's or the node's default applies


def live_event_from_json(data: Mapping[str, Any]) -> LiveEvent:
    """The stream sends the event's fields and the task's beside them, in one flat object."""
    return LiveEvent(
        event=event_from_json(data),
        state=TaskState(data["state"]),
        queue=data.get("queue"),
        type=data.get("type"),
    )


def task_type_from_json(data: Mapping[str, Any]) -> TaskTypeInfo:
    info: TaskTypeInfo = converter.structure(data, TaskTypeInfo)
    return info


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
    named = _NAMED.get(code)
    exc = named(str(error.get("name", ""))) if named else _typed(status, code, error, item, task_id)
    if index is None:
        exc.args = (message,)
        return exc
    exc.args = (_BATCH_PREFIX.sub("", message, count=1),)
    batch = BatchItemError(index, exc)
    batch.args = (message,)
    return batch


_PLAIN: dict[str, Callable[[], ActorqError]] = {
    "invalid_json": InvalidJson,
    "invalid_input": InvalidInput,
    "invalid_transition": InvalidTransition,
    "overloaded": Overloaded,
    "storage_error": StorageError,
    "unavailable": Unavailable,
    "not_ready": Unavailable,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
}
_ABOUT_TASK: dict[str, Callable[[str], ActorqError]] = {
    "task_not_found": TaskNotFound,
    "task_expired": TaskExpired,
    "task_purged": TaskPurged,
}


def _queue_error(code: str, error: dict[str, Any]) -> ActorqError:
    queue = str(error.get("queue", ""))
    if code == "queue_not_found":
        return QueueNotFound(queue)
    depth, wait = error.get("max_depth"), error.get("retry_after")
    return QueueFull(
        queue, depth if isinstance(depth, int) else 0, wait if isinstance(wait, int) else 1
    )


# Errors about a named thing (a schedule) whose body carries its name.
_NAMED: dict[str, Callable[[str], ActorqError]] = {
    "schedule_not_found": ScheduleNotFound,
    "schedule_exists": DuplicateSchedule,
    "token_not_found": TokenNotFound,
    "token_exists": DuplicateToken,
}


def _typed(
    status: int, code: str, error: dict[str, Any], item: Mapping[str, Any], task_id: str | None
) -> ActorqError:
    if code in _PLAIN:
        return _PLAIN[code]()
    if code in _ABOUT_TASK:
        return _ABOUT_TASK[code](task_id or "")
    match code:
        case "duplicate_idempotency_key":
            holder = error.get("task_id")
            key = item.get("idempotency_key")
            return DuplicateTask(str(key or ""), holder if isinstance(holder, str) else None)
        case "unknown_task_type":
            return UnknownTaskType(str(item.get("type", "")))
        case "rate_limited":
            after = error.get("retry_after")
            return RateLimited(float(after) if isinstance(after, int | float) else 1.0)
        case "queue_not_found" | "queue_full":
            return _queue_error(code, error)
        case "node_not_found":
            return NodeNotFound(str(error.get("node", "")))
    if status == 503:  # a code this client does not know yet, saying "try again later"
        return Unavailable()
    exc = ActorqError()
    exc.code = code
    return exc
