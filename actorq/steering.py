"""What a handler may raise to steer its own task, instead of failing an attempt.

``Permanent``: the task ends ``dead`` now, whatever attempts it has left (retrying cannot
help: a malformed payload, a refused account). ``Snooze``: the task runs again after
``seconds`` and this run does not count as an attempt (a rate-limited upstream, a resource
not ready yet). ``Cancel``: the task ends ``cancelled`` (the work is no longer wanted).

Each becomes one journaled event (``dead_lettered``, ``snoozed``, ``cancelled``: built here,
folded by ``lifecycle``), so a replay of the journal reproduces it. They work the same from
``async def`` and from threaded ``def`` handlers.
"""

from __future__ import annotations

from typing import Any

from actorq.model import Event, EventKind, Task

SNOOZE_MAX = 2_592_000.0
"""The longest snooze, in seconds (30 days)."""


class Steer(Exception):
    """Base of the exceptions a handler raises to decide its task's fate itself."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason


class Permanent(Steer):
    """End the task ``dead`` at once: no more attempts. ``reason`` becomes its error."""


class Cancel(Steer):
    """End the task ``cancelled``; ``reason`` is recorded in its history."""


class Snooze(Steer):
    """Run the task again after ``seconds`` (0 to ``SNOOZE_MAX``) without spending an
    attempt: its attempt number afterwards is what it was before this run started.

    A bad ``seconds`` (negative, beyond ``SNOOZE_MAX``, NaN, not a number) raises
    ``ValueError`` at once, and the run fails as a handler's bug does, that message its error.
    """

    def __init__(self, seconds: float, reason: str | None = None) -> None:
        ok = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        if not ok or not 0 <= seconds <= SNOOZE_MAX:
            raise ValueError(
                f"Snooze seconds must be a number from 0 to {SNOOZE_MAX:.0f}, got {seconds!r}"
            )
        super().__init__(reason)
        self.seconds = float(seconds)


def permanent_event(task: Task, error: str, *, at: float, node: str) -> Event:
    """``Permanent``: dead now, attempts left or not; ``error`` is the task's error."""
    data = {"error": error, "reason": "permanent"}
    return Event(EventKind.DEAD_LETTERED, task.id, at, node, data, task.worker)


def snoozed_event(
    task: Task, seconds: float, *, at: float, node: str, reason: str | None = None
) -> Event:
    """``Snooze``: due again ``seconds`` from now, the attempt given back (the fold's
    ``_snooze``)."""
    data: dict[str, Any] = {"run_at": at + seconds, "seconds": seconds}
    if reason:
        data["reason"] = reason
    return Event(EventKind.SNOOZED, task.id, at, node, data, task.worker)


def cancelled_event(task: Task, reason: str, *, at: float, node: str) -> Event:
    """``Cancel``: cancelled, the reason and who decided it in the event."""
    data = {"reason": reason, "by": "handler"}
    return Event(EventKind.CANCELLED, task.id, at, node, data, task.worker)


def steered_event(how: Steer, task: Task, reason: str | None, *, at: float, node: str) -> Event:
    """The event of a run whose handler raised ``how``; ``reason`` is its reason as the
    journal may store it."""
    reason = reason or None
    match how:
        case Snooze(seconds=seconds):
            return snoozed_event(task, seconds, at=at, node=node, reason=reason)
        case Cancel():
            return cancelled_event(task, reason or "cancelled by its handler", at=at, node=node)
    return permanent_event(task, reason or "the handler gave up (Permanent)", at=at, node=node)
