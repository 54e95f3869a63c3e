"""Journal replay for audits: rebuild the projection from the journal, compare it with the
live one, show the queue as it was at a past instant, and export the journal.

A purged or expired task is absent from a replayed projection as it is from the live one.
The projection is the tasks and the queues' settings: each has its fold (``lifecycle`` and
``queues``), and the replay, the check and the rebuild cover both."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, Any

import attrs

import actorq.lifecycle as lifecycle
import actorq.queues as queues
from actorq.journal.base import Journal
from actorq.model import QUEUE_SUBJECT, Task, is_control
from actorq.queues import QueueSettings
from actorq.render import event_json


@attrs.frozen
class Report:
    events: int
    tasks: int
    missing: list[str]  # in the live projection, absent from the replay
    extra: list[str]  # produced by the replay, absent from the live projection
    different: list[str]
    # Queues whose live settings differ from the replayed ones (or exist on one side only).
    queues: list[str] = attrs.field(factory=list)

    @property
    def matches(self) -> bool:
        return not (self.missing or self.extra or self.different or self.queues)

    def as_json(self) -> dict[str, Any]:
        return {"matches": self.matches, **attrs.asdict(self)}


async def replay(journal: Journal, until: float | None = None) -> tuple[dict[str, Task], int]:
    """The projection the journal's events add up to (up to ``until``), and the event count."""
    tasks: dict[str, Task] = {}
    count = 0
    async for event in journal.events(0, until):
        if is_control(event.task_id):
            continue
        after = lifecycle.apply(tasks.get(event.task_id), event)
        if lifecycle.removes(event):  # purged or expired: its history stays, its row goes
            del tasks[event.task_id]
        else:
            tasks[event.task_id] = after
        count += 1
    return tasks, count


async def replay_queues(journal: Journal, until: float | None = None) -> dict[str, QueueSettings]:
    """The queues' settings the journal's queue events add up to (up to ``until``)."""
    found: dict[str, QueueSettings] = {}
    async for event in journal.events(0, until):
        if event.task_id.startswith(QUEUE_SUBJECT):
            found = queues.fold([event], found)
    return found


def _queue_mismatches(live: list[QueueSettings], replayed: dict[str, QueueSettings]) -> list[str]:
    by_name = {q.name: q for q in live}
    names = set(by_name) | set(replayed)
    return sorted(n for n in names if by_name.get(n) != replayed.get(n))


async def verify_projection(journal: Journal) -> Report:
    replayed, count = await replay(journal)
    replayed_queues = await replay_queues(journal)
    live_queues = await journal.queue_settings()
    live = {t.id: t async for t in journal.tasks()}
    different = [
        tid
        for tid, task in live.items()
        if tid in replayed and replayed[tid].audit_view() != task.audit_view()
    ]
    return Report(
        events=count,
        tasks=len(live),
        missing=sorted(set(live) - set(replayed)),
        extra=sorted(set(replayed) - set(live)),
        different=sorted(different),
        queues=_queue_mismatches(live_queues, replayed_queues),
    )


async def rebuild(journal: Journal) -> int:
    """Replace the live projection with the replayed one; returns the number of tasks."""
    replayed, _ = await replay(journal)
    replayed_queues = await replay_queues(journal)
    head = await journal.head()
    await journal.replace_projection(list(replayed.values()), head.journal_seq)
    await journal.replace_queues(list(replayed_queues.values()))
    return len(replayed)


def summarize(tasks: Iterable[Task]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state.value] = counts.get(task.state.value, 0) + 1
    return dict(sorted(counts.items()))


async def export(journal: Journal, out: IO[str], until: float | None = None) -> int:
    """Write the journal as JSON Lines, one event per line in seq order."""
    n = 0
    async for event in journal.events(0, until):
        out.write(json.dumps(event_json(event), separators=(",", ":")) + "\n")
        n += 1
    return n
