"""LiveFeed: the one owner of the node's live subscribers (SSE, WebSocket, ``wait_for``).

It hears this node's commits from the journal writer and hands them to the StatsAggregator,
its first subscriber, and to each live subscriber. On a journal shared by several nodes
(PostgreSQL) its follower tails the journal for every node's events, from the moment someone
first subscribes or asks for the statistics (a node nobody asks, ``actorq worker``, spends
nothing on it). On a journal of its own (SQLite) other processes may commit too (a web app's
``App.enqueue`` beside ``actorq serve``): while someone listens, the events between the last
one handed out and this node's next commit, or up to the head once the runtime hears of
another process's commit, are read and handed out in their place, so a subscriber sees the
file's history in seq order (the statistics read such tasks in by counting again).

A live subscriber has a bounded buffer (``Subscription``): the feed never waits for one. A
subscriber whose buffer would overflow gets a last ``lagged`` item naming the seq it can
resume from, and is dropped; the node goes on at its own pace. The feed carries task events
only: a queue's or a schedule's (control) events change settings, not tasks, and are read
from their own history.

Where a subscriber starts is what makes a resume exact (``actorq.streams``): on SQLite, the
seq of the last event handed out (later ones come live); on PostgreSQL, the follower's
position (a transaction id: every transaction below it was handed out, later ones come live).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs

import actorq.lifecycle as lifecycle
from actorq.actors.core import Actor, ActorRef, ActorStopped
from actorq.actors.journal_writer import Committed
from actorq.actors.stats import Following, ForeignCommitted, Tailed
from actorq.errors import ActorqError
from actorq.journal.base import Change, Journal, SharedJournal
from actorq.model import Event, EventKind, Task, TaskState, is_control

log = logging.getLogger("actorq.feed")

BUFFER = 1000  # items a live subscriber may have waiting before it is dropped as lagged


@attrs.define(eq=False)
class Item:
    """One task event as the streams show it; encoded at most once per form (``cache``)."""

    seq: int
    at: float
    kind: str
    task_id: str
    state: str | None
    queue: str | None
    type: str | None
    node: str
    worker: str | None
    actor: str | None = None  # who did it (actorq.auth): a token, the CLI, or the node
    cache: dict[str, Any] = attrs.field(factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "task_id": self.task_id,
            "state": self.state,
            "queue": self.queue,
            "type": self.type,
            "node": self.node,
            "worker": self.worker,
            "actor": self.actor,
        }


def item_of(e: Event, state: TaskState | None, queue: str | None, type_: str | None) -> Item:
    return Item(e.seq, e.at, e.kind.value, e.task_id, None if state is None else state.value,
                queue, type_, e.node, e.worker, e.actor)  # fmt: skip


def item_of_change(change: Change) -> Item:
    t = change.after
    return item_of(change.event, t.state, t.queue, t.type)


def item_of_tailed(e: Event, task: Task | None) -> Item:
    """An event read from the journal; ``task`` is its task if still in the projection."""
    queue = type_ = None
    if task is not None:
        queue, type_ = task.queue, task.type
    elif e.kind is EventKind.SUBMITTED:
        queue, type_ = e.data.get("queue"), e.data.get("type")
    elif lifecycle.removes(e):
        queue = e.data.get("queue")
    return item_of(e, lifecycle.state_after(e), queue, type_)


@attrs.define(eq=False)
class Batch:
    """Items handed out together; shared by every subscriber, encoded once (``cache``)."""

    items: list[Item]
    cache: dict[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def lagged(self) -> bool:
        return bool(self.items) and self.items[-1].kind == "lagged"


class Subscription:
    """A live subscriber's buffer: the feed offers batches, the reader takes them.

    Nothing here waits for the reader: past ``size`` waiting items the subscription ends with
    a ``lagged`` item, and ``resume`` is the seq of the last item it was given.
    """

    def __init__(self, size: int = BUFFER) -> None:
        self.size = max(1, size)
        self.resume: int | None = None  # the seq to resume from; set once it lagged
        self.last_seq: int | None = None  # the seq of the last item offered, in feed order
        self._batches: collections.deque[Batch] = collections.deque()
        self._waiting = 0  # items in _batches
        self._offset = 0  # items of the first batch already read by ``get``
        self._ready = asyncio.Event()
        self.ended = asyncio.Event()

    def offer(self, batch: Batch) -> bool:
        """Take ``batch``; False once the subscriber lagged (it is over: drop it)."""
        if self.ended.is_set():
            return False
        items = batch.items
        room = self.size - self._waiting
        if len(items) > room:
            if room > 0:
                self._batches.append(Batch(items[:room]))
                self.last_seq = items[room - 1].seq
            self.lag()
            return False
        if items:
            self._batches.append(batch)
            self._waiting += len(items)
            self.last_seq = items[-1].seq
            self._ready.set()
        return True

    def lag(self) -> None:
        """End with a ``lagged`` item naming where to resume."""
        if self.ended.is_set():
            return
        self.resume = self.last_seq
        # seq -1: nothing was given (a feed stopping before the first event); resume from
        # wherever the reader started.
        marker = Item(-1 if self.resume is None else self.resume, 0.0, "lagged", "", None, None,
                      None, "", None)  # fmt: skip
        self._batches.append(Batch([marker]))
        self.ended.set()
        self._ready.set()

    def take(self) -> list[Batch]:
        """Every batch waiting now (maybe none)."""
        batches = list(self._batches)
        if batches and self._offset:  # ``get`` and ``take`` are not mixed; still, be exact
            batches[0] = Batch(batches[0].items[self._offset :])
        self._batches.clear()
        self._waiting = self._offset = 0
        if not self.ended.is_set() or not batches:
            self._ready.clear()
        return batches

    async def wait(self) -> None:
        """Until items wait (or the subscription ended)."""
        await self._ready.wait()

    async def get(self) -> dict[str, Any]:
        """The next item as a dict (``{"kind": "lagged", "seq": ...}`` last, if it lagged)."""
        while not self._batches:
            self._ready.clear()
            await self._ready.wait()
        batch = self._batches[0]  # shared with other subscribers: read, never changed
        item = batch.items[self._offset]
        self._offset += 1
        if self._offset == len(batch.items):
            self._batches.popleft()
            self._offset = 0
        self._waiting -= 1
        if item.kind == "lagged":
            return {"kind": "lagged", "seq": self.resume}
        return item.to_json()

    def __len__(self) -> int:
        return self._waiting


@attrs.frozen
class Start:
    """Where a new subscriber's live items begin: after ``seq`` (SQLite), or at follower
    position ``position`` (PostgreSQL, a transaction id; None on SQLite)."""

    seq: int
    position: int | None


@attrs.frozen
class Subscribe:
    """Answered with a ``Start``; from then on the subscription receives every event."""

    subscription: Subscription


@attrs.frozen
class Where:
    """Answered with a ``Start``: where a subscriber would start now (without subscribing)."""


@attrs.frozen
class Unsubscribe:
    subscription: Subscription


@attrs.frozen
class Follow:
    """Follow a shared journal from now on (the statistics are asked for)."""


@attrs.frozen
class Count:
    """How many live subscribers there are now."""


@attrs.frozen
class _Tailed:
    events: list[Event]
    tasks: dict[str, Task]
    start: int
    end: int


@attrs.frozen
class _FollowerFailed:
    error: BaseException


class LiveFeed(Actor):
    mailbox_size = 4096

    def __init__(
        self,
        journal: Journal,
        node: str,
        stats: Callable[[], ActorRef],
        *,
        follow_seconds: float = 0.25,
    ) -> None:
        self._journal = journal
        self._node = node
        self._stats = stats
        self._shared = journal if isinstance(journal, SharedJournal) else None
        self._follow_seconds = follow_seconds
        self._subs: dict[Subscription, None] = {}
        self._seq = 0  # the last seq handed out
        self._position: int | None = None  # the follower's, once it runs
        self._follower: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    async def on_start(self) -> None:
        self._seq = (await self._journal.head()).journal_seq

    async def on_stop(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        # A restarted feed knows none of its old subscribers: they end as lagged, resumable.
        for sub in self._subs:
            sub.lag()
        self._subs.clear()

    async def receive(self, message: object) -> object:
        match message:
            case Committed(changes):
                await self._committed(message, changes)
            case _Tailed(events, tasks, start, end):
                await self._tailed(events, tasks, start, end)
            case Subscribe(subscription):
                await self._start_following()
                if self._shared is None and not self._subs:
                    # Nobody listened: other processes' commits were not read. They are
                    # history for this subscriber; live items begin after the head.
                    self._seq = max(self._seq, (await self._journal.head()).journal_seq)
                self._subs[subscription] = None
                return Start(self._seq, self._position)
            case ForeignCommitted():
                if self._shared is None and self._subs:
                    await self._catch_up(None)
            case Where():
                await self._start_following()
                return Start(self._seq, self._position)
            case Unsubscribe(subscription):
                self._subs.pop(subscription, None)
            case Follow():
                await self._start_following()
            case Count():
                return len(self._subs)
            case _FollowerFailed(error):
                raise error  # the supervisor restarts us, and the follower with us
        return None

    async def _committed(self, message: Committed, changes: Sequence[Change]) -> None:
        with contextlib.suppress(ActorStopped):
            await self._stats().tell(message)  # this node's own metrics, on either journal
        if self._shared is not None:
            self._kick.set()  # the follower picks them up with the other nodes' events
            return
        if not changes:
            return
        if self._subs:
            first = changes[0].event.seq
            if first > self._seq + 1:  # another process committed in between: theirs first
                await self._catch_up(first)
            fresh = [item_of_change(c) for c in changes if c.event.seq > self._seq]
            if fresh:
                self._fan_out(fresh)
        self._seq = max(self._seq, changes[-1].event.seq)

    async def _catch_up(self, before: int | None) -> None:
        """On a journal of its own: hand out the events committed after the last one handed
        out and before seq ``before`` (None: up to the head), another process's. More than a
        subscriber can hold lags every subscriber instead (they resume from history)."""
        events: list[Event] = []
        try:
            stream = self._journal.events(self._seq)
            try:
                async for e in stream:
                    if before is not None and e.seq >= before:
                        break
                    events.append(e)
                    if len(events) > BUFFER:
                        break
            finally:
                close = getattr(stream, "aclose", None)  # a generator left early: end it now
                if close is not None:
                    await close()
            tasks = await self._journal.get_many(list({e.task_id for e in events}))
        except ActorqError as exc:  # the file is busy or away: the next commit tries again
            log.debug("cannot read other processes' events: %s", exc)
            return
        if len(events) > BUFFER:
            for sub in self._subs:
                sub.lag()
            self._subs.clear()
            self._seq = before - 1 if before is not None else events[-1].seq
            return
        if not events:
            return
        self._seq = events[-1].seq
        mine = [e for e in events if not is_control(e.task_id)]
        if mine:
            self._fan_out([item_of_tailed(e, tasks.get(e.task_id)) for e in mine])

    async def _tailed(
        self, events: list[Event], tasks: dict[str, Task], start: int, end: int
    ) -> None:
        if events:
            with contextlib.suppress(ActorStopped):
                await self._stats().tell(Tailed(events, tasks))
        self._position = end
        mine = [e for e in events if not is_control(e.task_id)]
        if not mine:
            return
        self._seq = mine[-1].seq
        if self._subs:
            self._fan_out([item_of_tailed(e, tasks.get(e.task_id)) for e in mine])

    def _fan_out(self, items: list[Item]) -> None:
        batch = Batch(items)
        dropped = [sub for sub in self._subs if not sub.offer(batch)]
        for sub in dropped:
            del self._subs[sub]
            log.info("a live subscriber lagged behind; dropped (resume after seq %s)", sub.resume)

    # -- following a shared journal ------------------------------------------------------

    async def _start_following(self) -> None:
        """Answered only once the start position is read, so a subscriber misses nothing
        committed after its ask."""
        if self._shared is None or self._follower is not None:
            return
        self._position = await self._shared.tail_position()
        with contextlib.suppress(ActorStopped):
            await self._stats().tell(Following())
        self._follower = asyncio.create_task(
            self._follow(self._shared, self._position), name=f"feed-follower:{self._node}"
        )

    async def _follow(self, journal: SharedJournal, position: int) -> None:
        """Tail the journal: soon after this node commits (at most 20 times a second), else
        every ``follow_seconds``."""
        failing = False
        while True:
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), self._follow_seconds)
                self._kick.clear()
                while True:
                    start = position
                    events, position = await journal.tail(position)
                    if events:
                        tasks = await journal.get_many(list({e.task_id for e in events}))
                        await self.ref.tell(_Tailed(events, tasks, start, position))
                    elif position != start:
                        await self.ref.tell(_Tailed([], {}, start, position))
                    if len(events) < 1000:
                        break
                if failing:
                    log.info("following the journal again")
                    failing = False
                await asyncio.sleep(0.05)  # a busy node's commits are taken in batches
            except ActorqError as exc:  # the database is away: try again, quietly
                if not failing:
                    log.warning("cannot follow the journal, trying again: %s", exc)
                    failing = True
                await asyncio.sleep(min(5.0, 4 * self._follow_seconds))
            except ActorStopped:
                return
            except Exception as exc:  # noqa: BLE001 - a bug: the actor restarts, follower too
                with contextlib.suppress(ActorStopped):
                    self.ref.tell_nowait(_FollowerFailed(exc))
                return
