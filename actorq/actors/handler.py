"""A handler's run, seen from the worker: how it is called and how it ended, and the journal
event its end becomes.

A handler that raises or passes its timeout is a failed attempt; what it returns must be JSON
(it is journaled). One that raises ``Permanent``, ``Snooze`` or ``Cancel`` (``actorq.steering``)
decides its task's fate itself: dead now, due again later without spending the attempt, or
cancelled. Text bound for the database is made storable: no database keeps a NUL in a
text column, and a handler's error message may hold anything.
"""

from __future__ import annotations

import asyncio
import json
import random
import traceback
from collections.abc import Callable
from typing import Any

import attrs

import actorq.lifecycle as lifecycle
from actorq.errors import ActorqError
from actorq.model import Event, EventKind, Task
from actorq.retry import RetryPolicy
from actorq.steering import Cancel, Permanent, Snooze, steered_event
from actorq.tasks import Registry, TaskContext

_MAX_TRACEBACK = 4000
_MAX_REASON = 4000
# A result is journaled, so NaN and infinities are refused. One encoder for every call:
# ``json.dumps`` with a non-default option builds a new one each time.
_STRICT_JSON = json.JSONEncoder(allow_nan=False)


@attrs.frozen
class Succeeded:
    result: Any


@attrs.frozen
class Failed:
    error: str
    traceback: str | None = None
    timed_out: bool = False
    # No other attempt could end otherwise (its result is too large to keep): dead-lettered
    # at once, with this reason.
    permanent: str | None = None


@attrs.frozen
class Steered:
    """The handler raised ``Permanent``, ``Snooze`` or ``Cancel``: its task's fate is its
    own decision, not a failed attempt's."""

    how: Permanent | Snooze | Cancel

    @property
    def reason(self) -> str:
        return _storable(self.how.reason or "")[:_MAX_REASON]


@attrs.frozen
class Cancelled:
    """The handler was stopped because its task was cancelled (already journaled)."""


@attrs.frozen
class NotStarted:
    """The held task could not start: cancelled or reaped meanwhile, or the journal refused.
    Nothing to journal: a task still held comes back when its lease expires, attempts
    intact."""

    reason: str


Ended = Succeeded | Failed | Steered | Cancelled
"""How a run that started ended."""


async def call(
    registry: Registry,
    task: Task,
    node: str,
    max_result_bytes: int | None = None,
    report: Callable[[float, str | None], None] | None = None,
) -> Succeeded | Failed | Steered:
    """Run the task's handler within its timeout; how it ended. A result whose JSON is
    larger than ``max_result_bytes`` is never stored: the attempt fails for good (another
    would most likely return the same), so the task is dead-lettered at once."""
    try:
        task_type = registry.get(task.type)
        ctx = TaskContext(task, node, report)
        if task.timeout is None:  # no timer to arm and disarm around the handler
            result = await task_type.call(task.payload, ctx)
        else:
            async with asyncio.timeout(task.timeout):
                result = await task_type.call(task.payload, ctx)
        text = _STRICT_JSON.encode(result)  # journaled: refuse what JSON cannot carry
        size = len(text) if len(text) * 4 <= (max_result_bytes or 0) else len(text.encode())
        if max_result_bytes is not None and size > max_result_bytes:
            error = (f"result too large: its JSON is {size} bytes, more than "
                     f"ACTORQ_MAX_RESULT_BYTES={max_result_bytes}; it was not stored")  # fmt: skip
            return Failed(error, permanent="result_too_large")
        return Succeeded(result)
    except TimeoutError:
        return Failed(f"timed out after {task.timeout}s", timed_out=True)
    except (Permanent, Snooze, Cancel) as how:
        return Steered(how)
    except ActorqError as exc:
        return Failed(_storable(str(exc)))
    except Exception as exc:  # noqa: BLE001 - a handler's error is a failed attempt
        tb = "".join(traceback.format_exception(exc))[-_MAX_TRACEBACK:]
        return Failed(_storable(f"{type(exc).__name__}: {exc}"), _storable(tb))


def outcome_event(
    task: Task,
    outcome: Ended,
    at: float,
    node: str,
    worker: str,
    policy: RetryPolicy,
    rng: random.Random,
    started_at: float | None = None,
) -> Event | None:
    """The journal event for how a run ended; None for a cancelled one (the cancellation
    itself was journaled). With ``started_at``, the run's start was not written: the event
    carries it (``lifecycle.carries_start``)."""
    start = {} if started_at is None else {"started_at": started_at}
    match outcome:
        case Succeeded(result):
            data = {"result": result, **start}
            return Event(EventKind.SUCCEEDED, task.id, at, node, data, worker)
        case Failed(error, tb, timed_out, permanent):
            event = lifecycle.decide_failure(
                task, error=error, timed_out=timed_out, at=at, node=node, policy=policy,
                rng=rng, permanent=permanent,
            )  # fmt: skip
            extra = {"traceback": tb} if tb else {}
            return attrs.evolve(event, data={**event.data, **extra, **start}, worker=worker)
        case Steered(how):
            event = steered_event(how, task, outcome.reason, at=at, node=node)
            return attrs.evolve(event, data={**event.data, **start}, worker=worker)
    return None


def _storable(text: str) -> str:
    return text.replace("\x00", "\ufffd")
