"""How an operator writes durations and rates in flags, ``ACTORQ_*`` variables and the
configuration file: ``7d``, ``12h``, ``90`` (seconds); ``200/s``, ``1000/m``."""

from __future__ import annotations

import math
import re

from actorq.errors import InvalidInput

_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([smhd])\s*")


def parse_duration(value: object, name: str = "duration") -> float:
    """Seconds from a number, or from text: a number with an optional unit (s, m, h, d, w):
    ``3600``, ``90s``, ``12h``, ``7d``. Never negative."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f"{name} must be a duration like 7d, 12h or 3600, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _DURATION.fullmatch(value)
        if found is None:
            raise InvalidInput(f"{name} must be a duration like 7d, 12h or 3600, got {value!r}")
        seconds = float(found.group(1)) * _SECONDS[found.group(2) or "s"]
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"{name} must be a finite duration of 0 or more, got {value!r}")
    return seconds


def parse_rate(value: str, name: str = "rate") -> tuple[int, float]:
    """``(limit, period in seconds)`` from ``N/UNIT`` or ``N/<k>UNIT``: ``200/s``,
    ``1000/m``, ``50/10s``. The limit is at least 1."""
    found = _RATE.fullmatch(value)
    if found is None:
        raise InvalidInput(f"{name} must look like 200/s, 1000/m or 50/10s, got {value!r}")
    limit = int(found.group(1))
    period = float(found.group(2) or 1) * _SECONDS[found.group(3)]
    if limit < 1 or period <= 0:
        raise InvalidInput(f"{name} must allow at least 1 request per period, got {value!r}")
    return limit, period
