"""Logs an operator can search: the process's logging set up as JSON lines or text, and the
task lines every node writes.

JSON (one object a line: ``time``, ``level``, ``logger``, ``message`` and the fields a line
carries) by python-json-logger's formatter on the standard library's logging, so every
``logging.getLogger`` of the package speaks it; fields are passed as ``extra``. Text shows
the same fields as ``key=value`` after the message. The default is JSON when stdout is not a
terminal (a container, a service manager, a pipe), text when a person watches.

Task lines come from the journal writer once a batch is durable: one at debug per task
transition, one at warning per failed attempt (a handler that failed or passed its timeout, a
running task whose lease expired), each with the task's id, queue, type and attempt and the
node and worker concerned.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.json import JsonFormatter

from actorq.model import EventKind, TaskState

if TYPE_CHECKING:
    from actorq.journal.base import Change

FORMATS = ("json", "text")
TASK_FIELDS = ("task_id", "queue", "type", "attempt", "node", "worker")
# Fields a line may carry beyond the record's own: shown by the text format too.
FIELDS = (*TASK_FIELDS, "state", "previous", "event", "error", "request_id", "method", "path",
          "status", "duration_ms", "remote")  # fmt: skip
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

tasks_log = logging.getLogger("actorq.tasks")


def default_format() -> str:
    """JSON unless stdout is a terminal."""
    return "text" if sys.stdout.isatty() else "json"


class TextFormatter(logging.Formatter):
    """The classic line, then the structured fields it carries as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{k}={getattr(record, k)}" for k in FIELDS if hasattr(record, k)]
        return f"{line} [{' '.join(fields)}]" if fields else line


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",  # ISO 8601 UTC
        )
    return TextFormatter(_TEXT)


def setup(level: str, fmt: str | None = None) -> None:
    """Send the process's logs to stderr in ``fmt`` (default: ``default_format()``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt or default_format()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def task_fields(change: Change) -> dict[str, Any]:
    e, t = change.event, change.after
    return {"task_id": t.id, "queue": t.queue, "type": t.type, "attempt": t.attempt,
            "node": e.node, "worker": e.worker or t.worker}  # fmt: skip


def _failed_attempt(change: Change) -> bool:
    kind, before = change.event.kind, change.before
    if kind in (EventKind.FAILED, EventKind.TIMED_OUT):
        return True
    if kind is EventKind.LEASE_EXPIRED:
        return before is TaskState.RUNNING
    return kind is EventKind.DEAD_LETTERED and change.event.data.get("reason") != "permanent"


def log_changes(changes: Iterable[Change]) -> None:
    """The task lines for changes just made durable (see the module's doc)."""
    debug = tasks_log.isEnabledFor(logging.DEBUG)
    for change in changes:
        failed = _failed_attempt(change)
        if not (debug or failed):
            continue
        fields = task_fields(change)
        e, before, after = change.event, change.before, change.after.state
        fields |= {"event": e.kind.value, "state": after.value,
                   "previous": None if before is None else before.value}  # fmt: skip
        if failed:
            error = e.data.get("error") or e.kind.value
            tasks_log.warning("task %s attempt %d failed: %s", change.after.id,
                              change.after.attempt, error,
                              extra={**fields, "error": error})  # fmt: skip
        if debug:
            tasks_log.debug("task %s %s: %s -> %s", change.after.id, e.kind.value,
                            fields["previous"], after.value, extra=fields)  # fmt: skip
