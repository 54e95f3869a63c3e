"""Runs a batch of journal operations inside one open transaction, for any backend.

A backend supplies a ``Tx``: how to read candidate rows (with whatever locking its database
needs), how to number events, and how to write events and rows. This module decides *what*
happens, through the shared fold in ``lifecycle``; so the SQLite and PostgreSQL journals
cannot drift apart in meaning, only in SQL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

import actorq.lifecycle as lifecycle
import actorq.queues as queues
import actorq.recurrence as recurrence
from actorq.errors import (
    ActorqError,
    DuplicateTask,
    InvalidInput,
    InvalidTransition,
    QueueFull,
    TaskNotFound,
)
from actorq.journal import claims
from actorq.journal.base import (
    Append,
    Change,
    Claim,
    ConfigureQueue,
    DeadAction,
    DeleteSchedule,
    Expire,
    ExtendLeases,
    FireSchedules,
    Op,
    Outcome,
    PromoteDue,
    PurgeQueue,
    ReapExpired,
    SaveSchedule,
    Selection,
    Settled,
    SettleDead,
    Start,
    Started,
    Submit,
)
from actorq.journal.schedule_batch import ScheduleRun
from actorq.model import LIVE_STATES, SCHEDULE_SUBJECT, Event, EventKind, Schedule, Task, TaskState
from actorq.queues import QueueSettings


class Tx(claims.ClaimTx, Protocol):
    """One open write transaction of a backend."""

    async def load(self, task_ids: Sequence[str]) -> dict[str, Task]: ...

    async def ready(
        self, limit: int, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> list[Task]:
        """Queued tasks of those queues and types (None: any), best first (priority desc,
        run_at, seq), locked for this tx."""

    async def due(self, at: float, limit: int) -> list[Task]: ...

    async def expired(self, at: float, limit: int) -> list[Task]: ...

    async def live_key_owner(self, key: str) -> str | None: ...

    async def extend(self, task_ids: Sequence[str], until: float) -> int: ...

    async def allocate(self, n: int) -> list[int]:
        """``n`` fresh, increasing journal sequence numbers."""

    async def dead(self, selection: Selection, after: str | None, limit: int) -> list[Task]:
        """Dead tasks of ``selection`` in id (creation) order after the id ``after``, locked for
        this tx (rows locked by another are passed over)."""

    async def finished(
        self, cutoff: float, limit: int, only: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[Task]:
        """Finished tasks whose finished_at is at or before ``cutoff``, oldest first, of the
        queues ``only`` (None: any) but not of ``exclude``, locked as ``dead`` locks."""

    async def write(self, events: Sequence[Event], tasks: Sequence[Task], new: set[str]) -> None:
        """Insert the events; insert the tasks whose id is in ``new``, update the others."""

    async def remove(self, task_ids: Sequence[str], seq: int) -> None:
        """Delete these tasks' rows: events up to ``seq`` (their last) are applied."""

    async def queue_rows(self, names: Sequence[str]) -> dict[str, QueueSettings]:
        """The settings of these configured queues, locked for this tx."""

    async def depth_limits(self) -> dict[str, int]:
        """The max_depth of every queue that has one (read without a lock)."""

    async def save_queue(self, settings: QueueSettings, refill: bool) -> None:
        """Write a queue's settings row; ``refill``: its rate limit changed, fill the bucket."""

    async def depth_counts(self, queues: Sequence[str]) -> dict[str, int]:
        """Queued and scheduled tasks of these queues, by queue."""

    async def in_states(
        self, queue: str, states: Sequence[TaskState], limit: int
    ) -> list[Task]: ...
    async def load_schedule(self, name: str) -> Schedule | None:
        """The schedule's row, locked for this tx."""

    async def due_schedules(self, at: float, limit: int) -> list[Schedule]:
        """Schedules whose next tick is at or before ``at``, earliest first, locked for this
        tx; rows another transaction holds are passed over."""

    async def write_schedules(self, events: Sequence[Event], rows: Sequence[ScheduleRow]) -> None:
        """Insert the events and write each row (see ``ScheduleRow``). A row whose seq is no
        longer the one it was read with fails the whole transaction."""


# (name, the seq its row had when this transaction read it or None for a new row, the row to
# write or None to delete it)
ScheduleRow = tuple[str, int | None, Schedule | None]


@attrs.define
class _Staged:
    changes: list[Change] = attrs.Factory(list)
    tasks: dict[str, Task] = attrs.Factory(dict)
    new: set[str] = attrs.Factory(set)
    controls: list[Event] = attrs.Factory(list)  # schedule events
    schedules: dict[str, ScheduleRow] = attrs.Factory(dict)
    removed: set[str] = attrs.Factory(set)


async def refold(tx: Tx, events: list[Event]) -> None:
    """Apply journal events the projection missed (in seq order) to the tasks they touch."""
    before = await tx.load(list({e.task_id for e in events}))
    # A task already gone from the projection has nothing left to fold.
    events = [e for e in events if not (lifecycle.removes(e) and e.task_id not in before)]
    after = lifecycle.fold(events, dict(before))
    await tx.write([], list(after.values()), set(after) - set(before))
    gone = sorted(set(before) - set(after))
    if gone:
        await tx.remove(gone, max(e.seq for e in events))


class BatchRun:
    """State of one batch: what was staged but not yet written to the transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._staged = _Staged()
        self._known: dict[str, Task] = {}  # current rows, as this transaction sees them
        self._starts: dict[int, Outcome] | None = None  # the batch's starts, decided together
        self._gone: set[str] = set()  # removed from the projection by this batch
        self._depth_limits: dict[str, int] | None = None  # read once per batch, if needed
        self._schedules: dict[str, Schedule | None] = {}  # rows as this transaction sees them
        self._actor: str | None = None  # who asked for the operation being run

    async def run(self, ops: Sequence[Op]) -> list[Outcome]:
        # One read for every task the batch's transitions touch, not one per operation.
        wanted = [op.event.task_id for op in ops if isinstance(op, Append)]
        wanted += [op.task_id for op in ops if isinstance(op, Start)]
        if wanted:
            self._known.update(await self._tx.load(wanted))
        outcomes = []
        for i, op in enumerate(ops):
            if isinstance(op, Start):
                if self._starts is None:
                    self._starts = await self._start_all(ops)
                outcomes.append(self._starts[i])
            else:
                self._actor = getattr(op, "actor", None)
                outcomes.append(await self._run_one(op))
        await self.flush()
        return outcomes

    async def flush(self) -> None:
        staged, self._staged = self._staged, _Staged()
        if staged.changes or staged.tasks:
            events = [c.event for c in staged.changes]
            await self._tx.write(events, list(staged.tasks.values()), staged.new)
        if staged.controls:
            await self._tx.write_schedules(staged.controls, list(staged.schedules.values()))
        if staged.removed:
            seq = max(c.event.seq for c in staged.changes)
            await self._tx.remove(sorted(staged.removed), seq)

    async def _run_one(self, op: Op) -> Outcome:
        try:
            match op:
                case Submit():
                    return await self._submit(op)
                case Append():
                    return await self._append(op)
                case Claim():
                    await self.flush()
                    rows = await claims.claimable(self._tx, len(op.workers), op.queues,
                                                  op.types, op.tiers, op.at, op.served,
                                                  op.limited)  # fmt: skip
                    until = op.at + op.lease_seconds
                    return await self._apply_each(
                        rows, lambda t, i: _claimed(t, op.workers[i], op.at, op.node, until)
                    )
                case PromoteDue():
                    await self.flush()
                    rows = await self._tx.due(op.at, op.limit)
                    return await self._apply_each(
                        rows, lambda t, _: Event(EventKind.ENQUEUED, t.id, op.at, op.node)
                    )
                case ReapExpired():
                    await self.flush()
                    rows = await self._tx.expired(op.at, op.limit)
                    return await self._apply_each(
                        rows, lambda t, _: lifecycle.decide_lease_expiry(t, at=op.at, node=op.node)
                    )
                case ExtendLeases():
                    await self.flush()
                    return Outcome(await self._tx.extend(op.task_ids, op.until))
                case SettleDead() | Expire():
                    await self.flush()
                    return await (self._settle(op) if isinstance(op, SettleDead)
                                  else self._expire(op))  # fmt: skip
                case ConfigureQueue():
                    return await self._configure(op)
                case PurgeQueue():
                    await self.flush()
                    rows = await self._tx.in_states(op.queue, op.states, op.limit)
                    data = {"reason": op.reason}
                    return await self._apply_each(
                        rows, lambda t, _: Event(EventKind.CANCELLED, t.id, op.at, op.node, data)
                    )
                case SaveSchedule() | DeleteSchedule() | FireSchedules():
                    return await ScheduleRun(self).run(op)
        except ActorqError as exc:
            return Outcome(error=exc)
        raise TypeError(f"unknown journal operation {op!r}")  # pragma: no cover

    async def _start_all(self, ops: Sequence[Op]) -> dict[int, Outcome]:
        """Decide every start of the batch at once: one read of the best ready tasks serves
        them all (a start is on every task's path; a read per start would not do)."""
        starts = {i: op for i, op in enumerate(ops) if isinstance(op, Start)}
        await self.flush()
        first = next(iter(starts.values()))
        allow = await claims.allowance(self._tx, first.queues, first.at)
        if first.tiers:
            ready = await claims.by_tiers(
                self._tx, len(starts), first.types, first.tiers, allow, None
            )
        else:
            ready = await claims.take(self._tx, len(starts), first.queues, first.types, allow)
        outcomes: dict[int, Outcome] = {}
        taken: list[Task] = []
        for i, op in starts.items():
            same_filter = (op.queues, op.types, op.tiers) == (
                first.queues,
                first.types,
                first.tiers,
            )
            try:
                outcomes[i] = await self._start(op, ready if same_filter else [], allow)
            except ActorqError as exc:
                outcomes[i] = Outcome(error=exc)
            started = outcomes[i].value
            if isinstance(started, Started) and started.released and started.task is not None:
                taken.append(started.task)
        await claims.spend(self._tx, allow, taken)
        return outcomes

    async def _start(self, op: Start, ready: list[Task], allow: claims.Allowance | None) -> Outcome:
        held = await self._current(op.task_id)
        if held is None:
            raise TaskNotFound(op.task_id)
        if held.state is not TaskState.CLAIMED or held.worker != op.claimer:
            raise InvalidTransition(f"task {held.id} is no longer held by {op.claimer}")
        if allow is not None and held.queue in allow.paused:
            # Claimed before its queue was paused: it goes back, and starts after a resume.
            back = Event(EventKind.RELEASED, held.id, op.at, op.node, {"reason": "queue paused"},
                         op.worker)  # fmt: skip
            outcome = await self._stage([(held, back)])
            return Outcome(Started(None, released=held.id), changes=outcome.changes)
        until = op.at + op.lease_seconds
        better = ready[0] if ready and queues.outranks(ready[0], held, op.tiers) else None
        if better is None:
            started = _started(held, op, until)
            outcome = await self._stage([(held, started)])
            return Outcome(Started(outcome.value[0]), changes=outcome.changes)
        # A ready task outranks the held one: it goes first, the held one back to its place.
        ready.pop(0)
        released = Event(EventKind.RELEASED, held.id, op.at, op.node, {}, op.worker)
        claimed = _claimed(better, op.worker, op.at, op.node, until)
        outcome = await self._stage([(held, released), (better, claimed)])
        back, taken = outcome.value
        index = next((k for k, t in enumerate(ready) if queues.outranks(back, t, op.tiers)), None)
        ready.insert(len(ready) if index is None else index, back)  # the next start sees it
        begun = await self._stage([(taken, _started(taken, op, until))])
        return Outcome(
            Started(begun.value[0], released=held.id), changes=[*outcome.changes, *begun.changes]
        )

    async def _current(self, task_id: str) -> Task | None:
        if task_id in self._gone:
            return None
        if task_id not in self._known:
            self._known.update(await self._tx.load([task_id]))
        return self._known.get(task_id)

    async def _stage(self, pairs: list[tuple[Task | None, Event]]) -> Outcome:
        """Number and apply events (all or none), then stage them for writing."""
        seqs = await self._tx.allocate(len(pairs))
        changes = []
        for (before, event), seq in zip(pairs, seqs, strict=True):
            numbered = self._numbered(event, seq)
            after = lifecycle.apply(before, numbered)
            changes.append(Change(numbered, None if before is None else before.state, after))
        for change in changes:
            task = change.after
            self._staged.changes.append(change)
            if lifecycle.removes(change.event):
                self._staged.tasks.pop(task.id, None)
                self._staged.removed.add(task.id)
                self._known.pop(task.id, None)
                self._gone.add(task.id)
                continue
            self._staged.tasks[task.id] = task
            self._known[task.id] = task
            if change.before is None:
                self._staged.new.add(task.id)
        return Outcome([c.after for c in changes], changes=changes)

    def _numbered(self, event: Event, seq: int) -> Event:
        """The event as the journal keeps it: its seq, and its actor (the event's own, else
        whoever asked for the operation, else the node that decided it)."""
        actor = event.actor or self._actor or event.node
        return Event(event.kind, event.task_id, event.at, event.node, event.data, event.worker,
                     seq, actor)  # fmt: skip

    async def schedule(self, name: str) -> Schedule | None:
        """Schedule ``name`` as this transaction sees it (its row locked)."""
        if name not in self._schedules:
            self._schedules[name] = await self._tx.load_schedule(name)
        return self._schedules[name]

    async def due_schedules(self, at: float, limit: int) -> list[Schedule]:
        rows = await self._tx.due_schedules(at, limit)
        self._schedules.update((r.name, r) for r in rows)
        return rows

    async def stage(self, pairs: list[tuple[Task | None, Event]]) -> Outcome:
        return await self._stage(pairs)

    async def stage_schedule(self, before: Schedule | None, event: Event) -> Schedule | None:
        """Number and apply one schedule event, then stage it for writing."""
        (seq,) = await self._tx.allocate(1)
        numbered = self._numbered(event, seq)
        after = recurrence.apply(before, numbered)
        name = numbered.task_id.removeprefix(SCHEDULE_SUBJECT)
        staged = self._staged.schedules.get(name)
        first_seq = staged[1] if staged is not None else None if before is None else before.seq
        self._staged.controls.append(numbered)
        self._staged.schedules[name] = (name, first_seq, after)
        self._schedules[name] = after
        return after

    async def _apply_each(self, rows: list[Task], make: Callable[[Task, int], Event]) -> Outcome:
        if not rows:
            return Outcome([])
        return await self._stage([(t, make(t, i)) for i, t in enumerate(rows)])

    async def _settle(self, op: SettleDead) -> Outcome:
        """Retry or purge one chunk of dead letters. A retry whose idempotency key a live task
        took meanwhile is skipped (a retry of that one task alone says why)."""
        rows = await self._tx.dead(op.selection, op.after, op.limit)
        pairs: list[tuple[Task | None, Event]] = []
        keys: set[str] = set()  # taken by a retry of this chunk
        for task in rows:
            self._known[task.id] = task
            if op.action is DeadAction.RETRY:
                key = task.idempotency_key
                owner = None if key is None else await self._key_owner(key)
                if key in keys or (owner is not None and owner != task.id):
                    continue
                if key is not None:
                    keys.add(key)
                event = lifecycle.retried_event(task, at=op.at, node=op.node, by=op.by)
            else:
                event = lifecycle.purged_event(task, at=op.at, node=op.node, by=op.by)
            pairs.append((task, event))
        staged = await self._stage(pairs) if pairs else Outcome([])
        last = rows[-1].id if rows else None
        return Outcome(Settled(staged.value, len(rows), last), changes=staged.changes)

    async def _expire(self, op: Expire) -> Outcome:
        """One chunk of finished tasks past their retention (the queue's own, if it has one)."""
        overridden = sorted(op.overrides)
        pairs: list[tuple[Task, float]] = []
        if op.retention < math.inf:  # inf: kept for ever, but in queues with a period
            rows = await self._tx.finished(op.at - op.retention, op.limit, None, overridden)
            pairs = [(t, op.retention) for t in rows]
        for queue in overridden:
            room = op.limit - len(pairs)
            if room <= 0:
                break
            seconds = op.overrides[queue]
            found = await self._tx.finished(op.at - seconds, room, [queue], [])
            pairs += [(t, seconds) for t in found]
        if not pairs:
            return Outcome([])
        return await self._stage(
            [(t, lifecycle.expired_event(t, at=op.at, node=op.node, retention=r))
             for t, r in pairs]
        )  # fmt: skip

    async def _key_owner(self, key: str) -> str | None:
        return self._staged_key_owner(key) or await self._live_owner(key)

    async def _submit(self, op: Submit) -> Outcome:
        ids = {new.id for new in op.tasks}
        if len(ids) < len(op.tasks):
            raise InvalidInput("a submission names the same task id more than once")
        again = ids & self._known.keys()
        if again:  # ids are fresh UUIDs; a table's own key refuses one from an earlier batch
            raise InvalidTransition(f"task {min(again)} was already submitted")
        keys: dict[str, str] = {}
        for new in op.tasks:
            key = new.idempotency_key
            if key is None:
                continue
            owner = keys.get(key) or self._staged_key_owner(key) or await self._live_owner(key)
            if owner is not None:
                raise DuplicateTask(key, owner)
            keys[key] = new.id
        await self._admit(op)
        events = [lifecycle.submitted_event(n, at=op.at, node=op.node) for n in op.tasks]
        return await self._stage([(None, e) for e in events])

    async def _admit(self, op: Submit) -> None:
        """Refuse the whole submission if it would take a queue past its max_depth (queued
        and scheduled tasks). The queue's row is locked first: concurrent submitters to it
        take turns, and none can overshoot."""
        if self._depth_limits is None:
            self._depth_limits = await self._tx.depth_limits()
        if not self._depth_limits:
            return
        wanted: dict[str, int] = {}
        for new in op.tasks:
            if new.queue in self._depth_limits:
                wanted[new.queue] = wanted.get(new.queue, 0) + 1
        if not wanted:
            return
        await self.flush()  # what this batch staged counts too
        names = sorted(wanted)
        rows = await self._tx.queue_rows(names)
        depths = await self._tx.depth_counts(names)
        for name in names:
            limit = rows[name].max_depth if name in rows else None
            if limit is None:
                continue
            if depths.get(name, 0) + wanted[name] > limit:
                raise QueueFull(name, limit)

    async def _configure(self, op: ConfigureQueue) -> Outcome:
        await self.flush()
        current = (await self._tx.queue_rows([op.name])).get(op.name)
        event = queues.configured_event(op.name, op.changes, at=op.at, node=op.node)
        (seq,) = await self._tx.allocate(1)
        event = self._numbered(event, seq)
        after = queues.apply(current, event)
        await self._tx.write([event], [], set())
        await self._tx.save_queue(after, refill="rate_limit" in op.changes)
        if self._depth_limits is not None:
            self._depth_limits = None  # read again by a later submit of this batch
        return Outcome(after, control=[event])

    def _staged_key_owner(self, key: str) -> str | None:
        for task in self._staged.tasks.values():
            if task.idempotency_key == key and task.state in LIVE_STATES:
                return task.id
        return None

    async def _live_owner(self, key: str) -> str | None:
        owner = await self._tx.live_key_owner(key)
        if owner is None:
            return None
        known = self._known.get(owner)  # it may have finished earlier in this batch
        return None if known is not None and known.state not in LIVE_STATES else owner

    async def _append(self, op: Append) -> Outcome:
        event = op.event
        task = await self._current(event.task_id)
        if task is None:
            raise TaskNotFound(event.task_id)
        stale = (op.worker is not None and task.worker != op.worker) or (
            op.attempt is not None and task.attempt != op.attempt
        )
        if stale:
            raise InvalidTransition(
                f"task {task.id} is no longer held by {op.worker} (attempt {op.attempt})"
            )
        key = task.idempotency_key
        if event.kind is EventKind.RETRIED:
            event = lifecycle.decide_retry(task, event)
        if event.kind is EventKind.RETRIED and key is not None:
            # A retry makes the task live again: its key may belong to a newer task by now.
            owner = self._staged_key_owner(key) or await self._live_owner(key)
            if owner is not None and owner != task.id:
                raise DuplicateTask(key, owner)
        staged = await self._stage([(task, event)])
        return Outcome(staged.value[0], changes=staged.changes)


def _claimed(task: Task, worker: str, at: float, node: str, until: float) -> Event:
    return lifecycle.claimed_event(task.id, worker, at=at, node=node, until=until)


def _started(task: Task, op: Start, until: float) -> Event:
    return Event(EventKind.STARTED, task.id, op.at, op.node, {"lease_expires_at": until}, op.worker)
