"""How tasks and events look in JSON, for the node's own writers (HTTP, CLI, export).

The wire format itself lives in ``actorq.wire`` (one cattrs converter); these are its names
for the callers that render. Every time that leaves the process goes through ``iso``: UTC,
exactly six fractional digits and ``Z`` (``2026-11-27T02:20:52.000000Z``).
"""

from __future__ import annotations

from actorq.wire import event_json, iso, task_json

__all__ = ["event_json", "iso", "task_json"]
