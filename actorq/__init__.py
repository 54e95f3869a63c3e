"""actorq: a durable background task queue on an actor runtime, journaled in SQLite or
PostgreSQL."""

from actorq.app import App
from actorq.client import Client, TaskFields
from actorq.config import Config
from actorq.errors import (
    ActorqError,
    BatchItemError,
    DuplicateTask,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    Overloaded,
    RateLimited,
    StorageError,
    TaskExpired,
    TaskNotFound,
    TaskPurged,
    Unauthorized,
    Unavailable,
    UnknownTaskType,
    Unreachable,
)
from actorq.model import Event, EventKind, Task, TaskState
from actorq.retry import Backoff, RetryPolicy
from actorq.steering import Cancel, Permanent, Snooze
from actorq.sync_client import SyncClient
from actorq.tasks import TaskContext
from actorq.wire import LiveEvent, TaskTypeInfo

__all__ = [
    "ActorqError",
    "App",
    "Backoff",
    "BatchItemError",
    "Cancel",
    "Client",
    "Config",
    "DuplicateTask",
    "Event",
    "EventKind",
    "Forbidden",
    "InvalidInput",
    "InvalidTransition",
    "LiveEvent",
    "Overloaded",
    "Permanent",
    "RateLimited",
    "RetryPolicy",
    "Snooze",
    "StorageError",
    "SyncClient",
    "Task",
    "TaskContext",
    "TaskExpired",
    "TaskFields",
    "TaskNotFound",
    "TaskPurged",
    "TaskState",
    "TaskTypeInfo",
    "Unauthorized",
    "Unavailable",
    "UnknownTaskType",
    "Unreachable",
]
