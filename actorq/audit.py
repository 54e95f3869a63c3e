"""Journal replay for audits: rebuild the projection from the journal, compare it with the
live one, show the queue as it was at a past instant, and export the journal.

The projection is the tasks, the queues' settings and the schedules: each has its fold
(``lifecycle``, ``queues``, ``recurrence``), and the replay, the check and the rebuild cover
all three. A purged or expired task is absent from a replayed projection as it is from the
live one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import IO, Any

import attrs

import actorq.lifecycle as lifecycle
import actorq.queues as queues
import actorq.recurrence as recurrence
from actorq.errors import InvalidInput
from actorq.journal.archive import Segments
from actorq.journal.base import Journal
from actorq.journal.chain import ChainReport, check_chain
from actorq.journal.rows import EVENT_COLUMNS, event_from_row
from actorq.model import QUEUE_SUBJECT, Event, Schedule, Task, is_control
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
    # the same for the schedules projection, by name
    schedules: int = 0
    schedules_missing: list[str] = attrs.Factory(list)
    schedules_extra: list[str] = attrs.Factory(list)
    schedules_different: list[str] = attrs.Factory(list)

    @property
    def matches(self) -> bool:
        return not (
            self.missing or self.extra or self.different or self.queues or self.schedules_missing
            or self.schedules_extra or self.schedules_different
        )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {"matches": self.matches, **attrs.asdict(self)}


async def history(
    journal: Journal, archive: Segments | None = None, until: float | None = None
) -> AsyncIterator[Event]:
    """Every event of the history in seq order (up to ``until``): the archived ranges from
    ``archive``'s segments, then the journal's rows. Archived history without its segments
    cannot be replayed: that raises InvalidInput."""
    through = await journal.archived_through()
    if through and archive is None:
        raise InvalidInput(f"the journal is archived through seq {through}: give --archive DIR")
    if archive is not None and through:
        async for row in archive.rows(through):
            event = event_from_row(row)
            if until is not None and event.at > until:
                return
            yield event
    async for event in journal.events(through, until):
        yield event


async def history_rows(journal: Journal, archive: Segments | None) -> AsyncIterator[Any]:
    """The journal's rows as stored, archived ones first (when ``archive`` is given)."""
    through = await journal.archived_through()
    if archive is not None and through:
        async for row in archive.rows(through):
            yield row
    async for row in journal.journal_rows(through):
        yield row


async def verify_seals(
    journal: Journal,
    key: bytes | None,
    expect: tuple[int, str] | None = None,
    archive: Segments | None = None,
) -> ChainReport:
    """Check the chain of seals and every sealed row (archived ones through ``archive``;
    without it they are counted as unchecked)."""
    through = await journal.archived_through()
    return await check_chain(
        journal.seal_list(), history_rows(journal, archive), EVENT_COLUMNS, key,
        unchecked_through=0 if archive is not None else through, expect=expect,
    )  # fmt: skip


@attrs.frozen
class Replayed:
    """What the history adds up to: the tasks (count: their events), the queues' settings and
    the schedules."""

    tasks: dict[str, Task]
    count: int
    queues: dict[str, QueueSettings]
    schedules: dict[str, Schedule]


async def replay_all(
    journal: Journal, until: float | None = None, archive: Segments | None = None
) -> Replayed:
    """Fold the history (up to ``until``) in one streaming pass: events come a page at a
    time and fold as they come, so memory follows the size of the answer (tasks still in the
    projection at ``until``), not the journal's length."""
    tasks: dict[str, Task] = {}
    settings: dict[str, QueueSettings] = {}
    schedules: dict[str, Schedule] = {}
    count = 0
    async for event in history(journal, archive, until):
        if not is_control(event.task_id):
            after = lifecycle.apply(tasks.get(event.task_id), event)
            if lifecycle.removes(event):  # purged or expired: its history stays, its row goes
                del tasks[event.task_id]
            else:
                tasks[event.task_id] = after
            count += 1
        elif event.task_id.startswith(QUEUE_SUBJECT):
            settings[event.task_id] = queues.apply(settings.get(event.task_id), event)
        elif recurrence.is_schedule_event(event):
            recurrence.fold([event], schedules)
    by_name = {q.name: q for q in settings.values()}
    return Replayed(tasks, count, by_name, schedules)


async def replay(
    journal: Journal, until: float | None = None, archive: Segments | None = None
) -> tuple[dict[str, Task], int]:
    """The projection the journal's events add up to (up to ``until``), and the event count."""
    done = await replay_all(journal, until, archive)
    return done.tasks, done.count


async def replay_queues(
    journal: Journal, until: float | None = None, archive: Segments | None = None
) -> dict[str, QueueSettings]:
    """The queues' settings the journal's queue events add up to (up to ``until``)."""
    return (await replay_all(journal, until, archive)).queues


def _queue_mismatches(live: list[QueueSettings], replayed: dict[str, QueueSettings]) -> list[str]:
    by_name = {q.name: q for q in live}
    names = set(by_name) | set(replayed)
    return sorted(n for n in names if by_name.get(n) != replayed.get(n))


async def replay_schedules(
    journal: Journal, until: float | None = None, archive: Segments | None = None
) -> dict[str, Schedule]:
    """The schedules the journal's ``schedule:NAME`` events add up to (up to ``until``)."""
    return (await replay_all(journal, until, archive)).schedules


async def verify_projection(journal: Journal, archive: Segments | None = None) -> Report:
    done = await replay_all(journal, archive=archive)
    replayed, count, replayed_queues, schedules = (done.tasks, done.count, done.queues,
                                                   done.schedules)  # fmt: skip
    live_queues = await journal.queue_settings()
    live_schedules = {s.name: s for s in await journal.schedules()}
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
        schedules=len(live_schedules),
        schedules_missing=sorted(set(live_schedules) - set(schedules)),
        schedules_extra=sorted(set(schedules) - set(live_schedules)),
        schedules_different=sorted(
            n for n, s in live_schedules.items() if n in schedules and schedules[n] != s
        ),
    )


async def rebuild(journal: Journal, archive: Segments | None = None) -> int:
    """Replace the live projections with the replayed ones; returns the number of tasks."""
    done = await replay_all(journal, archive=archive)
    replayed, replayed_queues, schedules = done.tasks, done.queues, done.schedules
    head = await journal.head()
    await journal.replace_projection(
        list(replayed.values()),
        head.journal_seq,
        list(replayed_queues.values()),
        list(schedules.values()),
    )
    return len(replayed)


def summarize(tasks: Iterable[Task]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state.value] = counts.get(task.state.value, 0) + 1
    return dict(sorted(counts.items()))


async def export(
    journal: Journal,
    out: IO[str],
    until: float | None = None,
    by: str | None = None,
    archive: Segments | None = None,
) -> int:
    """Write the journal as JSON Lines, one event per line in seq order (only the events of
    actor ``by``, if given); ``archive``: the segments of its archived ranges too."""
    n = 0
    async for event in history(journal, archive, until):
        if by is not None and event.actor != by:
            continue
        out.write(json.dumps(event_json(event), separators=(",", ":")) + "\n")
        n += 1
    return n
