"""Health: what the runtime asks an actor to learn whether this node can do its work.

An actor that can tell whether it is able to do its job right now (the journal writer: can it
write? the dispatcher: can it claim?) answers the ask ``Health()`` with a ``HealthReport``.
The runtime's readiness asks each of them; one that does not answer in time is not ready.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Health:
    """Ask: can you do your job right now?"""


@attrs.frozen
class HealthReport:
    ok: bool
    reason: str | None = None  # why not, in words for an operator (no driver detail needed)
