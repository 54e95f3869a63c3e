"""Queues as operator-controlled objects: their settings, the events that change them, and a
node's claim order over the queues it serves.

A queue exists once a task names it or an operator configures it. Its settings change only
through ``queue_configured`` events on the subject ``queue:NAME`` (``model.QUEUE_SUBJECT``),
each carrying the settings it changed; ``fold`` adds them up, as ``lifecycle.fold`` does for
tasks, and the ``queues`` projection table holds the result. The token bucket of a rate limit
is soft state beside it (like a lease, not journaled): a replay resets it full.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

import actorq.lifecycle as lifecycle
from actorq.errors import InvalidInput
from actorq.model import QUEUE_SUBJECT, Event, EventKind, Task, TaskState
from actorq.retry import PolicyError, RetryPolicy, policy_from_json, policy_json

MAX_NAME = 200
MAX_COUNT = 1_000_000_000  # concurrency, rate limit, max depth: what both databases hold
MAX_SECONDS = 10 * 365 * 86400.0  # rate period and retention: ten years at most
SETTINGS = ("paused", "concurrency", "rate_limit", "max_depth", "retention", "retry")
# The states a purge may end (a held or running task is cancelled as DELETE /tasks/{id} does).
PURGEABLE = (TaskState.QUEUED, TaskState.SCHEDULED, TaskState.CLAIMED, TaskState.RUNNING)
DEFAULT_PURGE = (TaskState.QUEUED, TaskState.SCHEDULED)
_UNFIT = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@attrs.frozen
class RateLimit:
    """At most ``limit`` tasks start per ``period`` seconds, across the cluster."""

    limit: int
    period: float

    @property
    def per_second(self) -> float:
        return self.limit / self.period

    def as_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "period": self.period}


@attrs.frozen
class QueueSettings:
    """One row of the ``queues`` projection: what the queue's events add up to."""

    name: str
    paused: bool = False
    concurrency: int | None = None
    rate_limit: RateLimit | None = None
    max_depth: int | None = None
    retention: float | None = None  # seconds; None: the node's default
    # The retry policy of its tasks submitted without one of their own (over their type's and
    # the node's: ``actorq.retry.resolve``). None: their type's or the node's applies.
    retry: RetryPolicy | None = None
    updated_at: float = 0.0
    seq: int = 0

    @property
    def limits_claims(self) -> bool:
        """Whether a claim must look at this queue before taking its tasks."""
        return self.paused or self.concurrency is not None or self.rate_limit is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paused": self.paused,
            "concurrency": self.concurrency,
            "rate_limit": None if self.rate_limit is None else self.rate_limit.as_json(),
            "max_depth": self.max_depth,
            "retention": self.retention,
            "retry": None if self.retry is None else policy_json(self.retry),
        }


def queue_policies(settings: Iterable[QueueSettings]) -> dict[str, RetryPolicy]:
    """The retry policies of the queues that have one, by name (``retry.RetryDefaults``)."""
    return {q.name: q.retry for q in settings if q.retry is not None}


def subject(name: str) -> str:
    return QUEUE_SUBJECT + name


def name_of(subject_: str) -> str:
    return subject_.removeprefix(QUEUE_SUBJECT)


def check_name(name: str) -> str:
    if not 1 <= len(name) <= MAX_NAME or _UNFIT.search(name):
        raise InvalidInput(
            f"a queue name is 1 to {MAX_NAME} characters, without control characters"
        )
    return name


# -- the fold ------------------------------------------------------------------------------


def apply(current: QueueSettings | None, event: Event) -> QueueSettings:
    """The settings after ``event`` (a ``queue_configured`` event on the queue's subject)."""
    if event.kind is not EventKind.QUEUE_CONFIGURED:
        raise InvalidInput(f"not a queue event: {event.kind}")
    base = current or QueueSettings(name_of(event.task_id))
    changes = structure(event.data)
    return attrs.evolve(base, **changes, updated_at=event.at, seq=event.seq)


def fold(
    events: Iterable[Event], queues: dict[str, QueueSettings] | None = None
) -> dict[str, QueueSettings]:
    """Fold the queue events among ``events`` (others are skipped) into ``queues``."""
    out = dict(queues or {})
    for event in events:
        if event.task_id.startswith(QUEUE_SUBJECT):
            name = name_of(event.task_id)
            out[name] = apply(out.get(name), event)
    return out


def configured_event(name: str, changes: Mapping[str, Any], *, at: float, node: str) -> Event:
    """The event recording ``changes`` (checked, as ``parse_patch`` gives them)."""
    return Event(EventKind.QUEUE_CONFIGURED, subject(name), at, node, unstructure(changes))


def structure(data: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as the event's JSON carries them, as QueueSettings' field values."""
    out = dict(data)
    if "rate_limit" in out and out["rate_limit"] is not None:
        rate = out["rate_limit"]
        out["rate_limit"] = RateLimit(int(rate["limit"]), float(rate["period"]))
    if out.get("retry") is not None:
        out["retry"] = policy_from_json(out["retry"])
    return out


def unstructure(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _json_of(v) for k, v in sorted(changes.items())}


def _json_of(value: Any) -> Any:
    if isinstance(value, RateLimit):
        return value.as_json()
    if isinstance(value, RetryPolicy):
        return policy_json(value)
    return value


# -- validation ------------------------------------------------------------------------------


def parse_patch(body: Any) -> dict[str, Any]:
    """The settings a PATCH body changes, each checked; null clears one."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object of queue settings")
    unknown = sorted(set(body) - set(SETTINGS))
    if unknown:
        raise InvalidInput(
            f"unknown queue setting {unknown[0][:40]!r}; settings are {', '.join(SETTINGS)}"
        )
    if not body:
        raise InvalidInput(f"give at least one of {', '.join(SETTINGS)}")
    changes: dict[str, Any] = {}
    for key, value in body.items():
        changes[key] = _PARSERS[key](value)
    return changes


def _paused(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput("paused must be true or false")
    return value


def _count(name: str, low: int) -> Any:
    def parse(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_COUNT:
            raise InvalidInput(f"{name} must be null or an integer from {low} to {MAX_COUNT}")
        return value

    return parse


def _seconds(name: str, value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
        raise InvalidInput(f"{name} must be a number of seconds above 0, at most {MAX_SECONDS:g}")
    return float(value)


def _rate_limit(value: Any) -> RateLimit | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"limit", "period"}:
        raise InvalidInput('rate_limit must be null or {"limit": n, "period": seconds}')
    limit = _count("rate_limit.limit", 1)(value["limit"])
    if limit is None:
        raise InvalidInput("rate_limit.limit must be an integer from 1")
    return RateLimit(limit, _seconds("rate_limit.period", value["period"]))


def _retention(value: Any) -> float | None:
    return None if value is None else _seconds("retention", value)


def _retry(value: Any) -> RetryPolicy | None:
    if value is None:
        return None
    try:
        return policy_from_json(value)
    except PolicyError as exc:
        raise InvalidInput(f"retry is invalid: {exc}") from None


_PARSERS = {
    "paused": _paused,
    "concurrency": _count("concurrency", 1),
    "rate_limit": _rate_limit,
    "max_depth": _count("max_depth", 0),
    "retention": _retention,
    "retry": _retry,
}


def parse_purge(body: Any) -> tuple[TaskState, ...]:
    """The states a purge body names (none: queued and scheduled)."""
    if body is None:
        return DEFAULT_PURGE
    if not isinstance(body, dict) or set(body) - {"states"}:
        raise InvalidInput('the body must be {"states": [...]} or empty')
    states = body.get("states")
    allowed = ", ".join(s.value for s in PURGEABLE)
    if not isinstance(states, list) or not states:
        raise InvalidInput(f"states must be a non-empty list of {allowed}")
    out: list[TaskState] = []
    for state in states:
        if not isinstance(state, str) or state not in {s.value for s in PURGEABLE}:
            raise InvalidInput(f"states must be a non-empty list of {allowed}")
        if TaskState(state) not in out:
            out.append(TaskState(state))
    return tuple(out)


def parse_rate(text: str) -> RateLimit | None:
    """``N/SECONDS`` (the CLI's --rate-limit), or ``none``."""
    if text.strip().lower() == "none":
        return None
    limit, sep, period = text.partition("/")
    try:
        parsed = {"limit": int(limit), "period": float(period)} if sep else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise InvalidInput(f"a rate limit is N/SECONDS (e.g. 10/1) or none, got {text!r}")
    return _rate_limit(parsed)


# -- a node's claim order ----------------------------------------------------------------------


@attrs.frozen
class Tier:
    """Queues a claim serves together: one queue (strict order), or weighted queues sharing
    the slots of a claim in proportion to their weights."""

    queues: tuple[tuple[str, int], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(q for q, _ in self.queues)


def parse_queues(text: str) -> tuple[Tier, ...]:
    """``--queues``: comma-separated queues in the order served. ``NAME`` alone is served
    strictly before every queue after it; consecutive ``NAME:WEIGHT`` entries form one group
    whose ready work shares each claim in proportion to the weights (1 to 1000).

    ``critical,default:3,low:1``: critical first; then default and low, 3 tasks to 1.
    """
    tiers: list[Tier] = []
    group: list[tuple[str, int]] = []
    seen: set[str] = set()
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, weight = entry.rpartition(":") if ":" in entry else (entry, "", "")
        name = name.strip()
        check_name(name)
        if name in seen:
            raise InvalidInput(f"--queues names {name!r} twice")
        seen.add(name)
        if not sep:
            if group:
                tiers.append(Tier(tuple(group)))
                group = []
            tiers.append(Tier(((name, 1),)))
            continue
        if not weight.strip().isdigit() or not 1 <= int(weight) <= 1000:
            raise InvalidInput(f"--queues: the weight of {name!r} must be an integer 1 to 1000")
        group.append((name, int(weight)))
    if group:
        tiers.append(Tier(tuple(group)))
    if not tiers:
        raise InvalidInput("--queues names no queue")
    return tuple(tiers)


def served(tiers: Sequence[Tier] | None) -> tuple[str, ...] | None:
    return None if tiers is None else tuple(q for t in tiers for q in t.names)


def tier_index(tiers: Sequence[Tier] | None) -> dict[str, int]:
    """Each served queue's place in ``--queues`` order: its tier's index (empty: no order)."""
    return {q: i for i, tier in enumerate(tiers or ()) for q in tier.names}


def outranks(a: Task, b: Task, tiers: Sequence[Tier] | None) -> bool:
    """Whether ready task ``a`` must start before held task ``b`` on a node serving ``tiers``:
    a queue of an earlier tier first, whatever the priorities (strict order); within one tier
    (a weighted group shares claims, not starts) and without tiers, by ``lifecycle.rank``."""
    index = tier_index(tiers)
    place_a, place_b = index.get(a.queue, len(index)), index.get(b.queue, len(index))
    if place_a != place_b:
        return place_a < place_b
    return lifecycle.ranks_before(a, b)


def tiers_up_to(tiers: Sequence[Tier], queue: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The queues of the tiers before ``queue``'s, and those of its own tier."""
    index = tier_index(tiers)
    mine = index.get(queue, len(tiers))
    before = tuple(q for t in tiers[:mine] for q in t.names)
    return before, (tiers[mine].names if mine < len(tiers) else (queue,))


def share(
    weights: Sequence[tuple[str, int]],
    available: Mapping[str, int],
    slots: int,
    served: Mapping[str, int] | None = None,
) -> list[str]:
    """Which queue each of ``slots`` goes to, in turn: each next slot to the queue furthest
    below its share of the weights among those with work left (``available`` per queue),
    counting what the node ``served`` them lately (claims of one slot take turns too)."""
    left = dict(available)
    taken = {q: (served or {}).get(q, 0) for q, _ in weights}
    order: list[str] = []
    for _ in range(slots):
        candidates = [(q, w) for q, w in weights if left.get(q, 0) > 0]
        if not candidates:
            break
        q, _ = min(candidates, key=lambda qw: ((taken[qw[0]] + 1) / qw[1], weights.index(qw)))
        taken[q] += 1
        left[q] -= 1
        order.append(q)
    return order


# -- what an operator sees ---------------------------------------------------------------------

RATE_WINDOW = 60.0  # finished_per_second: tasks finished over the last minute, per second


@attrs.frozen
class QueueActivity:
    oldest_queued: dict[str, float]  # run_at of the oldest queued task, by queue
    finished: dict[str, int]  # tasks finished since the time asked for, by queue


class QueueReader(Protocol):
    """The reads ``describe`` needs (a ``Journal`` has them)."""

    async def counts(self) -> dict[tuple[str, TaskState], int]: ...

    async def queue_settings(self) -> list[QueueSettings]: ...

    async def queue_activity(self, since: float) -> QueueActivity: ...


async def describe(
    reader: QueueReader, now: float, name: str | None = None
) -> list[dict[str, Any]]:
    """Every queue (or queue ``name``, configured or not), as the API shows it: its settings,
    its tasks by state, the age of its oldest queued task and its finished tasks per second.
    A queue exists once a task names it or an operator configures it."""
    configured = {q.name: q for q in await reader.queue_settings()}
    counts = await reader.counts()
    activity = await reader.queue_activity(now - RATE_WINDOW)
    names = set(configured) | {q for q, _ in counts}
    if name is not None:
        names = {name} & names
    out = []
    for queue in sorted(names):
        settings = configured.get(queue) or QueueSettings(queue)
        by_state = {s.value: counts.get((queue, s), 0) for s in TaskState}
        oldest = activity.oldest_queued.get(queue)
        out.append({
            **settings.as_json(),
            "configured": queue in configured,
            "tasks": by_state,
            "oldest_queued_age": None if oldest is None else max(now - oldest, 0.0),
            "finished_per_second": activity.finished.get(queue, 0) / RATE_WINDOW,
        })  # fmt: skip
    return out


class WeightedTurns:
    """How many tasks a node took lately from each queue of its weighted groups: what the
    next claim's ``share`` starts from, so the weights hold across claims of a few slots.

    A queue that had nothing ready falls at most one round behind the others: when work comes
    back to it, it catches up by at most its weight, not with a burst. Whole rounds (every
    queue at least its weight) are dropped as they complete.
    """

    def __init__(self, tiers: Sequence[Tier] | None) -> None:
        self._groups = [t.queues for t in tiers or () if len(t.queues) > 1]
        self.served: dict[str, int] = {q: 0 for g in self._groups for q, _ in g}

    def took(self, queues: Sequence[str]) -> None:
        """A claim took tasks of these queues (one entry per task)."""
        for q in queues:
            if q in self.served:
                self.served[q] += 1
        for group in self._groups:
            ahead = max(self.served[q] // w for q, w in group)
            for q, w in group:
                self.served[q] = max(self.served[q], (ahead - 1) * w)
            rounds = min(self.served[q] // w for q, w in group)
            for q, w in group:
                self.served[q] -= rounds * w
