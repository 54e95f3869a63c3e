"""Prefetch: how many tasks each of a node's workers holds besides the one it runs."""

from __future__ import annotations

import math


class Prefetch:
    """How many tasks each worker should hold besides the one it runs.

    Enough that a worker finishing a task finds the next in hand while the claim that
    refills it commits: the claim's round trip divided by a handler's run time, both
    smoothed; never fewer than the configured prefetch, never more than ``burst`` times it.
    Slow tasks so keep the configured prefetch (a task held behind a long one waits, where
    another node could have run it); tiny tasks get enough in hand to keep workers busy.
    """

    def __init__(self, base: int, burst: int) -> None:
        self.base = base
        self.most = base * burst
        self.run_seconds: float | None = None
        self.claim_seconds: float | None = None

    def ran(self, seconds: float) -> None:
        self.run_seconds = _smooth(self.run_seconds, seconds)

    def claimed(self, seconds: float) -> None:
        self.claim_seconds = _smooth(self.claim_seconds, seconds)

    def now(self) -> int:
        if self.run_seconds is None or self.claim_seconds is None or self.base == 0:
            return self.base
        wanted = math.ceil(self.claim_seconds / max(self.run_seconds, 1e-6))
        return max(self.base, min(self.most, wanted))


def _smooth(average: float | None, sample: float, weight: float = 0.1) -> float:
    return sample if average is None else average + weight * (sample - average)
