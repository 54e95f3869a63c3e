"""Typed domain errors. Deeper code raises these; the HTTP layer maps each to a status code."""

from __future__ import annotations


class ActorqError(Exception):
    """Base of every error actorq raises on purpose."""

    code = "error"


class InvalidInput(ActorqError):
    """A request field is missing, of the wrong type or out of range."""

    code = "invalid_input"


class TaskNotFound(ActorqError):
    code = "task_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id


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


class UnknownTaskType(ActorqError):
    code = "unknown_task_type"

    def __init__(self, task_type: str) -> None:
        super().__init__(f"no handler is registered for task type {task_type!r}")
        self.task_type = task_type


class Overloaded(ActorqError):
    """The runtime cannot take more work right now; the caller should retry later."""

    code = "overloaded"


class StorageError(ActorqError):
    """The journal's database failed in a way the caller cannot fix."""

    code = "storage_error"


class StorageUnavailable(StorageError):
    """The database cannot be reached or cannot write right now (down, locked, full, timed
    out): nothing is wrong with the request, and the same request may succeed later."""
