"""How tasks and events look in JSON: ISO 8601 times, stable field names.

Every time that leaves the process goes through ``iso``: UTC, exactly six fractional digits
and ``Z`` (``2026-11-27T02:20:52.000000Z``). Inside, times are POSIX float seconds.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from actorq.model import Event, Task

_EPOCH = dt.datetime(1970, 1, 1)
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


def _times_in(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data with its ``*_at`` times (run_at, retry_at, ...) rendered as ISO."""
    if not any(_is_time(k, v) for k, v in data.items()):
        return data
    return {k: iso(v) if _is_time(k, v) else v for k, v in data.items()}


def _is_time(key: str, value: Any) -> bool:
    return key.endswith("_at") and isinstance(value, int | float) and not isinstance(value, bool)


def task_json(t: Task) -> dict[str, Any]:
    return {
        "id": t.id,
        "type": t.type,
        "queue": t.queue,
        "state": t.state.value,
        "payload": t.payload,
        "priority": t.priority,
        "attempt": t.attempt,
        "max_attempts": t.max_attempts,
        "timeout": t.timeout,
        "metadata": t.metadata,
        "idempotency_key": t.idempotency_key,
        "result": t.result,
        "error": t.error,
        "scheduled_at": iso(t.run_at),
        "created_at": iso(t.created_at),
        "started_at": iso(t.started_at),
        "finished_at": iso(t.finished_at),
        "updated_at": iso(t.updated_at),
        "worker": t.worker,
        "lease_expires_at": iso(t.lease_expires_at),
    }


def event_json(e: Event) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": iso(e.at),
        "kind": e.kind.value,
        "task_id": e.task_id,
        "node": e.node,
        "worker": e.worker,
        "data": _times_in(e.data),
    }
