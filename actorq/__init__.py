"""actorq: a durable background task queue on an actor runtime, journaled in SQLite or
PostgreSQL."""

from actorq.app import App
from actorq.config import Config
from actorq.errors import (
    ActorqError,
    DuplicateTask,
    InvalidInput,
    InvalidTransition,
    Overloaded,
    StorageError,
    TaskNotFound,
    UnknownTaskType,
)
from actorq.lifecycle import Backoff, RetryPolicy
from actorq.model import Event, EventKind, Task, TaskState
from actorq.tasks import TaskContext

__all__ = [
    "ActorqError",
    "App",
    "Backoff",
    "Config",
    "DuplicateTask",
    "Event",
    "EventKind",
    "InvalidInput",
    "InvalidTransition",
    "Overloaded",
    "RetryPolicy",
    "StorageError",
    "Task",
    "TaskContext",
    "TaskNotFound",
    "TaskState",
    "UnknownTaskType",
]
