"""The event loop a node runs on.

``actorq serve`` and ``actorq worker`` run on uvloop where it is installed (a dependency on
Linux and macOS): the node's hot path is event-loop work (a handoff between actors, a task
for each handler, timers), and uvloop does it in C. Measured on the drain of 5,000 no-op
tasks (SQLite, 10 workers, five alternating pairs): CPU per task 350 -> 283 us (medians).
``ACTORQ_EVENT_LOOP=asyncio`` (or ``event_loop = "asyncio"``) keeps the standard loop. An
``App`` started inside someone else's program runs on that program's loop, whatever it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("actorq")

T = TypeVar("T")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory of the loop ``name`` names; None: asyncio's own (also when uvloop is
    asked for but not installed)."""
    if name != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        log.debug("uvloop is not installed: the standard event loop runs the node")
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], name: str) -> T:
    """``asyncio.run`` on the loop ``name`` names."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)


def running() -> str:
    """The running loop's kind, as the start-up line says it: uvloop or asyncio."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
