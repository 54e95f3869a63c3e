"""What a submission may say: each field of the API's ``NewTask`` with the range the README
and openapi.json document, as one rule per field.

A rule is the cattrs structure hook of its field (``actorq.wire`` builds the converter from
them): it accepts the field's JSON value and returns it as the model holds it, or raises a
``FieldError`` saying what the value must be; the converter's error names the field.
``common_shape`` takes the submission most callers send (a type and a payload) by the same
rules without the converter; whatever it does not accept goes the converter's way.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any, Final, Protocol

import attrs

from actorq.errors import InvalidInput
from actorq.model import NewTask, TypeDefaults
from actorq.retry import NO_OVERRIDES, PolicyError, RetryDefaults, RetryPolicy, policy_from_json

# The documented ranges of a submission (README, openapi.json): what both journals and the
# renderer hold. A value outside them is refused before it reaches a shared commit.
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1
MAX_ATTEMPTS_LIMIT = 1000
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


def _seconds(value: Any) -> float:
    """ISO 8601 (naive means UTC) or a POSIX timestamp, as POSIX seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
        if math.isfinite(seconds):
            return seconds
        raise FieldError(f"must be a finite time, got {_shown(value)}")
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return when.timestamp()
        except (ValueError, OverflowError):
            pass
    raise FieldError(f"must be an ISO 8601 time, got {_shown(value)}")


def parse_time(value: Any, name: str = "scheduled_at") -> float:
    """ISO 8601 (naive means UTC) or a POSIX timestamp, as POSIX seconds; ``name`` is what
    an error calls the value."""
    try:
        return _seconds(value)
    except FieldError as exc:
        raise InvalidInput(f"field {name!r} {exc}") from None


# -- what a submission may say -------------------------------------------------------------


class FieldError(ValueError):
    """A field's value refused: the message says what it must be; the converter's error
    names the field."""


def _given(value: Any, kind: Any) -> str:
    """What was given, for a value of the wrong type; a number out of range is not repeated
    (the range says enough, and a huge one only makes the message long)."""
    if isinstance(value, kind) and not isinstance(value, bool):
        return ""
    return f", got {_shown(value)}"


class Rule(Protocol):
    """What one field of a submission accepts: ``structure`` is its cattrs structure hook.
    ``None`` (JSON null, or the field left out) means the task type's default wherever one
    exists. tests/test_wire.py holds openapi.json to the same bounds."""

    def structure(self, value: Any, _: Any = None) -> Any: ...


@attrs.frozen
class Integer:
    """An integer in [low, high]; an integral float (5.0) counts, as JSON does not tell them
    apart."""

    low: int
    high: int

    def structure(self, value: Any, _: Any = None) -> int | None:
        if type(value) is int and self.low <= value <= self.high:
            return value
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not self.low <= value <= self.high
        ):
            raise FieldError(f"must be an integer from {self.low} to {self.high}"
                             + _given(value, int))  # fmt: skip
        return value


_NUMBER = (int, float)


@attrs.frozen
class Number:
    """A finite number in [low, high]; ``positive``: above ``low``, which is then 0."""

    low: float
    high: float
    positive: bool = False

    def structure(self, value: Any, _: Any = None) -> float | None:
        if value is None:
            return None
        ok = isinstance(value, _NUMBER) and not isinstance(value, bool)
        if not ok or not self.low <= value <= self.high:  # NaN fails every comparison
            raise FieldError(f"must be a number from {self.low} to {self.high}"
                             + _given(value, _NUMBER))  # fmt: skip
        if self.positive and value == 0:
            raise FieldError("must be positive")
        return float(value)


@attrs.frozen
class Text:
    """A string of 1 to ``MAX_TEXT`` characters, none of them ``forbidden``."""

    forbidden: re.Pattern[str]
    what: str  # the forbidden characters, for the message
    required: bool = False

    def structure(self, value: Any, _: Any = None) -> str | None:
        if value is None:
            if self.required:
                raise FieldError("is required")
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
            raise FieldError(f"must be a string of 1 to {MAX_TEXT} characters")
        if self.forbidden.search(value):
            raise FieldError(f"must not hold {self.what} or lone surrogates")
        return value


def _check_json(value: Any) -> None:
    """Refuse what the journal cannot store faithfully: nesting deeper than ``MAX_DEPTH``,
    NaN and infinities, lone surrogates, and anything that is not JSON at all."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise FieldError(f"is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str) or _SURROGATE.search(key):
                        raise FieldError("holds a key JSON cannot carry")
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            if _SURROGATE.search(item):
                raise FieldError("holds a lone surrogate")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise FieldError("holds NaN or an infinity")
        elif item is not None and not isinstance(item, int):  # bool is an int
            raise FieldError(f"holds a {type(item).__name__}, not JSON")


@attrs.frozen
class Json:
    """Any JSON value the journal can store faithfully: nested at most ``MAX_DEPTH`` deep,
    without NaN, infinities or lone surrogates."""

    def structure(self, value: Any, _: Any = None) -> Any:
        _check_json(value)
        return value


@attrs.frozen
class JsonObject:
    """A JSON object, as ``Json`` checks its values."""

    def structure(self, value: Any, _: Any = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FieldError("must be a JSON object")
        _check_json(value)
        return value


@attrs.frozen
class Time:
    """ISO 8601 (without a zone it is UTC) or POSIX seconds; how far ahead it may lie depends
    on the moment of submission, checked by ``Submission.new_task``."""

    def structure(self, value: Any, _: Any = None) -> float | None:
        return None if value is None else _seconds(value)


@attrs.frozen
class Retry:
    """A retry policy (``actorq.retry``): an object of backoff, base, factor, cap and jitter,
    each in its documented range; fields left out take the built-in policy's."""

    def structure(self, value: Any, _: Any = None) -> RetryPolicy | None:
        if value is None:
            return None
        try:
            return policy_from_json(value)
        except PolicyError as exc:
            raise FieldError(f"is invalid: {exc}") from None


RULE: Final = "actorq.submission.rule"  # the key of a field's rule in its metadata


def _rule(rule: Rule) -> Any:
    return attrs.field(default=None, metadata={RULE: rule})


# Not frozen: the converter builds one per submission and ``new_task`` reads it at once; a
# frozen class's __init__ costs three times as much on the enqueue path.
@attrs.define
class Submission:
    """A submission as the API takes it (openapi.json's ``NewTask``), every field checked;
    None where the task type's default applies."""

    type: str = attrs.field(metadata={RULE: Text(_CONTROL, "control characters", required=True)})
    payload: Any = _rule(Json())
    queue: str | None = _rule(Text(_CONTROL, "control characters"))
    priority: int | None = _rule(Integer(PRIORITY_MIN, PRIORITY_MAX))
    max_attempts: int | None = _rule(Integer(1, MAX_ATTEMPTS_LIMIT))
    timeout: float | None = _rule(Number(0, TIMEOUT_MAX, positive=True))
    delay: float | None = _rule(Number(0, DELAY_MAX))
    scheduled_at: float | None = _rule(Time())
    metadata: dict[str, Any] = attrs.field(factory=dict, metadata={RULE: JsonObject()})
    idempotency_key: str | None = _rule(Text(_UNSTORABLE, "NUL characters"))
    retry: RetryPolicy | None = _rule(Retry())

    def new_task(
        self, defaults: TypeDefaults, now: float, retry: RetryDefaults = NO_OVERRIDES
    ) -> NewTask:
        """The task this submission asks for, at ``now``, the type's ``defaults`` filled in
        and its retry policy chosen (``retry.choose``)."""
        queue = self.queue or defaults.queue
        return NewTask(
            type=self.type,
            payload=self.payload,
            queue=queue,
            priority=defaults.priority if self.priority is None else self.priority,
            max_attempts=defaults.max_attempts if self.max_attempts is None else self.max_attempts,
            timeout=defaults.timeout if self.timeout is None else self.timeout,
            run_at=self._run_at(now),
            metadata=self.metadata,
            idempotency_key=self.idempotency_key,
            retry=retry.choose(self.retry, queue, defaults.retry),
        )

    def _run_at(self, now: float) -> float | None:
        """When the task is due; None means now. A time in the past means now."""
        delay, at = self.delay, self.scheduled_at
        if delay is not None and at is not None:
            raise InvalidInput("give either 'delay' or 'scheduled_at', not both")
        if delay is not None:
            return now + delay if delay > 0 else None
        if at is None:
            return None
        if not 0 <= at <= now + DELAY_MAX:
            raise InvalidInput(
                "field 'scheduled_at' must lie between 1970-01-01T00:00:00Z and ten years from now"
            )
        return at if at > now else None


_TYPE: Final[Rule] = attrs.fields(Submission).type.metadata[RULE]


def common_shape(
    data: dict[str, Any],
    defaults_of: Callable[[str], TypeDefaults],
    now: float,
    retry: RetryDefaults = NO_OVERRIDES,
) -> NewTask | None:
    """The task of a submission that gives a type and at most a payload, as the converter
    and ``Submission.new_task`` would make it; None for any other submission, and for one a
    rule refuses, so the converter says why in its words. ``defaults_of`` raises
    ``UnknownTaskType`` as there. It spares the common case the converter's generated
    function and a ``Submission`` (1-2 us of the 7-10 a submission costs here)."""
    if not 1 <= len(data) <= 2 or "type" not in data:
        return None
    payload = data.get("payload")
    if len(data) == 2 and "payload" not in data:
        return None
    try:
        task_type = _TYPE.structure(data["type"])
        _check_json(payload)
    except FieldError:
        return None
    if task_type is None:  # the rule refuses a missing type: never here
        return None
    defaults = defaults_of(task_type)
    queue = defaults.queue
    return NewTask(
        type=task_type,
        payload=payload,
        queue=queue,
        priority=defaults.priority,
        max_attempts=defaults.max_attempts,
        timeout=defaults.timeout,
        retry=retry.choose(None, queue, defaults.retry),
    )
