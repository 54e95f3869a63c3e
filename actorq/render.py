"""How tasks and events look in JSON: ISO 8601 times, stable field names."""

from __future__ import annotations

import datetime as dt
from typing import Any

from actorq.model import Event, Task


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat().replace("+00:00", "Z")


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
        "data": e.data,
    }
