"""What a handler may raise to steer its own task, instead of failing an attempt.

``Permanent``: the task ends ``dead`` now, whatever attempts it has left (retrying cannot
help: a malformed payload, a refused account). ``Snooze``: the task runs again after
``seconds`` and this run does not count as an attempt (a rate-limited upstream, a resource
not ready yet). ``Cancel``: the task ends ``cancelled`` (the work is no longer wanted).

Each becomes one journaled event (``dead_lettered``, ``snoozed``, ``cancelled``), so a replay
of the journal reproduces it. They work the same from ``async def`` and from threaded
``def`` handlers.
"""

from __future__ import annotations

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
