"""Typed domain errors. Deeper code raises these; the HTTP layer maps each to a status code.

``details()`` is what an error adds to its JSON body besides its code and message.
"""

from __future__ import annotations

import math
from typing import Any


class ActorqError(Exception):
    """Base of every error actorq raises on purpose."""

    code = "error"

    def details(self) -> dict[str, Any]:
        return {}


class InvalidInput(ActorqError):
    """A request field is missing, of the wrong type or out of range."""

    code = "invalid_input"


class InvalidJson(InvalidInput):
    """The request body is not JSON: not UTF-8, malformed, NaN or Infinity, nested too deep."""

    code = "invalid_json"


class TaskNotFound(ActorqError):
    code = "task_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id


class TaskGone(TaskNotFound):
    """The task existed but left the live projection; its history is still in the journal."""

    code = "task_gone"
    why = "left the live projection"

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.args = (
            f"task {task_id!r} {self.why}; its history is still readable "
            f"(/api/v1/tasks/{task_id}/history)",
        )


class TaskExpired(TaskGone):
    code = "task_expired"
    why = "expired: it was finished for longer than the retention period"


class TaskPurged(TaskGone):
    code = "task_purged"
    why = "was purged from the dead letters"


class RateLimited(ActorqError):
    """A client sent more requests than ``ACTORQ_RATE_LIMIT`` allows; ``retry_after`` is
    the number of seconds until its next request is accepted."""

    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many requests; try again in {retry_after:.3g}s")
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"retry_after": max(1, math.ceil(self.retry_after))}  # as Retry-After says


class NodeNotFound(ActorqError):
    """No node of this id is live or recently gone."""

    code = "node_not_found"

    def __init__(self, node: str) -> None:
        super().__init__(f"no node named {node!r}")
        self.node = node

    def details(self) -> dict[str, Any]:
        return {"node": self.node}


class QueueNotFound(ActorqError):
    """No task names this queue and no operator configured it."""

    code = "queue_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no queue named {name!r}")
        self.name = name

    def details(self) -> dict[str, Any]:
        return {"queue": self.name}


class ScheduleNotFound(ActorqError):
    code = "schedule_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r}")
        self.name = name

    def details(self) -> dict[str, Any]:
        return {"name": self.name}


class DuplicateSchedule(ActorqError):
    """A schedule of that name exists already."""

    code = "schedule_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"a schedule named {name!r} exists already")
        self.name = name

    def details(self) -> dict[str, Any]:
        return {"name": self.name}


class InvalidTransition(ActorqError):
    """The task's current state does not allow what was asked (cancel a finished task...)."""

    code = "invalid_transition"


class DuplicateTask(ActorqError):
    """Another live task already holds this idempotency key."""

    code = "duplicate_idempotency_key"

    def __init__(self, key: str, existing_id: str | None = None) -> None:
        super().__init__(f"a live task already has idempotency key {key!r}")
        self.key = key
        self.existing_id = existing_id

    def details(self) -> dict[str, Any]:
        # The holder's id lets a client follow the task that has its key.
        return {} if self.existing_id is None else {"task_id": self.existing_id}


class UnknownTaskType(ActorqError):
    code = "unknown_task_type"

    def __init__(self, task_type: str) -> None:
        super().__init__(f"no handler is registered for task type {task_type!r}")
        self.task_type = task_type


class BatchItemError(ActorqError):
    """The error of one task of a batch: the item's own error, named by its index."""

    def __init__(self, index: int, error: ActorqError) -> None:
        super().__init__(f"task [{index}]: {error}")
        self.index = index
        self.error = error
        self.code = error.code

    def details(self) -> dict[str, Any]:
        return {**self.error.details(), "index": self.index}


class QueueFull(ActorqError):
    """The queue holds its ``max_depth`` of queued and scheduled tasks: the submission is
    refused whole; the client may try again after ``retry_after`` seconds."""

    code = "queue_full"

    def __init__(self, queue: str, max_depth: int, retry_after: int = 1) -> None:
        super().__init__(f"queue {queue!r} is full: it holds its max_depth of {max_depth} "
                         "queued and scheduled tasks")  # fmt: skip
        self.queue = queue
        self.max_depth = max_depth
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"queue": self.queue, "max_depth": self.max_depth, "retry_after": self.retry_after}


class Overloaded(ActorqError):
    """The runtime cannot take more work right now; the caller should retry later."""

    code = "overloaded"


class Unavailable(ActorqError):
    """A part of the node did not answer in time or has stopped; the caller may retry."""

    code = "unavailable"


class StorageError(ActorqError):
    """The journal's database failed in a way the caller cannot fix."""

    code = "storage_error"


class StorageUnavailable(StorageError):
    """The database cannot be reached or cannot write right now (down, locked, full, timed
    out): nothing is wrong with the request, and the same request may succeed later."""


class Unreachable(Unavailable):
    """The client could not reach the server, or lost it mid-answer (refused, reset, timed
    out): the request may or may not have been carried out."""

    code = "unreachable"


class Unauthorized(ActorqError):
    """No token, or one that is unknown or revoked (HTTP 401)."""

    code = "unauthorized"


class Forbidden(ActorqError):
    """A valid token without the scope the request needs (HTTP 403)."""

    code = "forbidden"


class TokenNotFound(ActorqError):
    code = "token_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no token named {name!r}")
        self.name = name

    def details(self) -> dict[str, Any]:
        return {"name": self.name}


class DuplicateToken(ActorqError):
    """A token of that name exists (or existed: a revoked token's name stays taken)."""

    code = "token_exists"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a token named {name!r} exists already (names of revoked tokens stay taken)"
        )
        self.name = name

    def details(self) -> dict[str, Any]:
        return {"name": self.name}
