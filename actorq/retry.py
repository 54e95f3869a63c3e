"""Retry policies: how long a task waits after a failed attempt, and which policy a task gets.

A policy is a backoff shape with its numbers. It is chosen once, when the task is submitted
(``RetryDefaults.choose``: the submission's own, else its queue's, else its type's, else the
node's default) and recorded in the ``submitted`` event, so every later decision and every
replay uses the same one. The JSON form (``policy_from_json``, ``policy_json``) is what the
API, the journal and the ``tasks`` projection hold; ``parse_spec`` reads the short form of the
command line and the configuration (``fixed,base=5``).
"""

from __future__ import annotations

import enum
import functools
import json
import random
from collections.abc import Mapping
from typing import Any

import attrs


class Backoff(enum.StrEnum):
    EXPONENTIAL = "exponential"  # base * factor ** (n - 1), at most cap
    LINEAR = "linear"  # base * n, at most cap
    FIXED = "fixed"  # base, every time


# The documented ranges (README, openapi.json's RetryPolicy).
DELAY_LIMIT = 2_592_000.0  # 30 days: the largest base and cap
FACTOR_MIN, FACTOR_MAX = 1.0, 10.0
_FIELDS = ("backoff", "base", "factor", "cap", "jitter")


class PolicyError(ValueError):
    """A policy refused: the message says which number and what it must be."""


def _number(name: str, value: Any, low: float, high: float) -> float:
    if not low <= value <= high:  # NaN fails every comparison
        raise PolicyError(
            f"{name!r} must be a number from {low:.15g} to {high:.15g}, got {_shown(value)}"
        )
    return float(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(policy: RetryPolicy) -> None:
    _number("base", policy.base, 0, DELAY_LIMIT)
    _number("factor", policy.factor, FACTOR_MIN, FACTOR_MAX)
    _number("cap", policy.cap, 0, DELAY_LIMIT)
    _number("jitter", policy.jitter, 0, 1)


def _backoff(value: Any) -> Backoff:
    try:
        return Backoff(value)
    except ValueError:
        allowed = ", ".join(b.value for b in Backoff)
        raise PolicyError(f"'backoff' must be one of {allowed}, got {_shown(value)}") from None


@attrs.frozen
class RetryPolicy:
    """Delay before attempt n+1 after attempt n failed, in seconds.

    ``base``: the first delay (fixed: every delay); ``factor``: the growth of exponential
    backoff; ``cap``: no delay of exponential or linear backoff exceeds it; ``jitter``: the
    delay is drawn from ``[delay * (1 - jitter), delay]``, so a failing burst spreads out.
    A policy out of its documented ranges cannot be built (``PolicyError``).
    """

    backoff: Backoff = attrs.field(default=Backoff.EXPONENTIAL, converter=_backoff)
    base: float = attrs.field(default=1.0, converter=float)
    factor: float = attrs.field(default=2.0, converter=float)
    cap: float = attrs.field(default=300.0, converter=float)
    jitter: float = attrs.field(default=0.5, converter=float)

    def __attrs_post_init__(self) -> None:
        _check(self)

    def delay(self, attempt: int, rng: random.Random) -> float:
        n = max(attempt, 1)
        if self.backoff is Backoff.FIXED:
            raw = self.base
        elif self.backoff is Backoff.LINEAR:
            raw = min(self.base * n, self.cap)
        else:
            try:
                raw = min(self.base * self.factor ** (n - 1), self.cap)
            except OverflowError:  # factor ** n beyond any float: long past the cap
                raw = self.cap
        return raw * (1.0 - self.jitter * rng.random())


DEFAULT = RetryPolicy()


def policy_json(policy: RetryPolicy) -> dict[str, Any]:
    """The JSON form: every field, the backoff by its name. (Made for every submission: the
    values of each distinct policy are read once.)"""
    return dict(zip(_FIELDS, _values(policy), strict=True))


@functools.lru_cache(maxsize=256)
def _values(policy: RetryPolicy) -> tuple[Any, ...]:
    return (policy.backoff.value, policy.base, policy.factor, policy.cap, policy.jitter)


def policy_from_json(value: Any) -> RetryPolicy:
    """A policy from its JSON form; fields left out take ``DEFAULT``'s. Raises
    ``PolicyError`` saying what is wrong."""
    if isinstance(value, RetryPolicy):
        return value
    if not isinstance(value, Mapping):
        raise PolicyError("must be a JSON object of backoff, base, factor, cap and jitter")
    unknown = sorted(str(k) for k in value if k not in _FIELDS)
    if unknown:
        raise PolicyError(f"unknown field(s) {', '.join(unknown)[:100]}; "
                          f"known: {', '.join(_FIELDS)}")  # fmt: skip
    given = {k: v for k, v in value.items() if v is not None}
    for name in ("base", "factor", "cap", "jitter"):
        number = given.get(name, 0)
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise PolicyError(f"{name!r} must be a number, got {_shown(number)}")
    try:
        return RetryPolicy(**given)
    except OverflowError:
        raise PolicyError("a number is too large") from None


def policy_from_text(text: str | None) -> RetryPolicy | None:
    """A policy from the JSON text a row holds (None: NULL)."""
    return None if text is None else policy_from_json(json.loads(text))


def policy_from_stored(data: Mapping[str, Any]) -> RetryPolicy:
    """A policy from the JSON form the journal holds (``policy_json``'s, every field given):
    one object per distinct policy, as the fold meets the same few for every task."""
    get = data.get
    return _stored(get("backoff"), get("base"), get("factor"), get("cap"), get("jitter"))


@functools.lru_cache(maxsize=256)
def _stored(*values: Any) -> RetryPolicy:
    return policy_from_json(dict(zip(_FIELDS, values, strict=True)))


def parse_spec(text: str) -> RetryPolicy:
    """The short form ``BACKOFF[,name=value...]`` (``exponential,base=1,cap=60``,
    ``fixed,base=5``) or the JSON form, as the command line and the configuration give it."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return policy_from_json(json.loads(text))
        except json.JSONDecodeError as exc:
            raise PolicyError(f"is not valid JSON: {exc}") from None
    backoff, *pairs = [p.strip() for p in text.split(",")]
    fields: dict[str, Any] = {"backoff": backoff}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name.strip() not in _FIELDS[1:]:
            raise PolicyError(f"{pair!r} is not one of base=, factor=, cap=, jitter=")
        try:
            fields[name.strip()] = float(raw)
        except ValueError:
            raise PolicyError(f"{name.strip()!r} must be a number, got {raw!r}") from None
    return policy_from_json(fields)


def resolve(
    submitted: RetryPolicy | None,
    queue: RetryPolicy | None,
    task_type: RetryPolicy | None,
    node: RetryPolicy,
) -> RetryPolicy:
    """The policy a task gets: the first one set of its submission's, its queue's, its
    type's; else the node's default. A policy is taken whole, never merged field by field."""
    for policy in (submitted, queue, task_type):
        if policy is not None:
            return policy
    return node


@attrs.frozen
class RetryDefaults:
    """What a submission's policy falls back on: the queues' policies (by queue name, as the
    queue settings hold them) and the node's default (``Config.retry``)."""

    node: RetryPolicy = DEFAULT
    queues: Mapping[str, RetryPolicy] = attrs.field(factory=dict)

    def choose(
        self, submitted: RetryPolicy | None, queue: str, task_type: RetryPolicy | None
    ) -> RetryPolicy:
        return resolve(submitted, self.queues.get(queue), task_type, self.node)


NO_OVERRIDES = RetryDefaults()
"""No queue policies, and the built-in policy as the node's default."""
