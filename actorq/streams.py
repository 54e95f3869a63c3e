"""A stream of task events: the ones a reader missed, from the journal, then live ones from
the node's feed, with no gap and none twice.

A reader names where it stopped by the seq of the last event it got (SSE ``Last-Event-ID``,
``?since=SEQ``). The hand-over from the journal to the feed goes: read the journal up to
about its head (no subscription yet, so a long catch-up cannot overflow a live buffer), then
subscribe, which tells where live delivery starts, then read the journal up to exactly there.

- SQLite: one writer numbers events in commit order, so "missed" is every seq above the
  reader's, and live delivery starts after the seq the feed last handed out.
Catching up goes up to where the feed stands (not the journal's head, which it may trail), so
what the subscription then brings live was never read from the journal.

- PostgreSQL: seqs commit out of order, and the feed hands events out by tail window (whole
  transactions below a safe position, each window in seq order; see ``PostgresJournal.tail``).
  A reader at seq N may have missed any later seq, and any event of a transaction above N's
  own (it could come in a later window with a lower seq): both are read again. Nothing is
  missed; an event with a seq below N that came in N's own window is given again (rare: it
  takes two transactions committing in one window against their order); a reader that
  keeps the seqs it has drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import attrs

from actorq.actors.core import ActorError, ActorRef
from actorq.actors.feed import (
    BUFFER,
    Batch,
    Item,
    Start,
    Subscribe,
    Subscription,
    Unsubscribe,
    Where,
    item_of_tailed,
)
from actorq.journal.base import Journal, SharedJournal, Since
from actorq.model import Event, is_control

_PAGE = 500  # events per journal read while catching up
_NEVER = 1 << 62  # a tail position no transaction reaches


@attrs.frozen
class Filter:
    """Which events a reader wants: each set, if given, must hold the event's value."""

    queues: frozenset[str] | None = None
    types: frozenset[str] | None = None
    tasks: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        queues: Collection[str] = (),
        types: Collection[str] = (),
        tasks: Collection[str] = (),
    ) -> Filter:
        def norm(values: Collection[str]) -> frozenset[str] | None:
            return frozenset(values) if values else None

        return cls(norm(queues), norm(types), norm(tasks))

    @property
    def everything(self) -> bool:
        return self.queues is None and self.types is None and self.tasks is None

    def __call__(self, item: Item) -> bool:
        return (
            (self.queues is None or item.queue in self.queues)
            and (self.types is None or item.type in self.types)
            and (self.tasks is None or item.task_id in self.tasks)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": sorted(self.queues or ()),
            "type": sorted(self.types or ()),
            "task": sorted(self.tasks or ()),
        }


class Stream:
    """Batches of items: missed ones from the journal (if ``since`` is given), then live.

    Use as an async context manager; ``next`` gives the next batch (an empty one after
    ``timeout`` of silence). A batch ending with a ``lagged`` item is the last.
    """

    def __init__(
        self,
        journal: Journal,
        feed: ActorRef,
        since: int | None,
        *,
        size: int = BUFFER,
        ask_timeout: float = 30.0,
    ) -> None:
        self._journal = journal
        self._shared = journal if isinstance(journal, SharedJournal) else None
        self._feed = feed
        self._since = since
        self._timeout = ask_timeout
        self.subscription = Subscription(size)
        self._replay: AsyncIterator[Batch] | None = None
        self._floor = 0  # live items at or below this seq were replayed (SQLite)

    async def __aenter__(self) -> Stream:
        if self._since is None:
            await self._subscribe()
        else:
            self._replay = self._catch_up(self._since)
        return self

    async def __aexit__(self, *_: object) -> None:
        with contextlib.suppress(ActorError):
            await self._feed.tell(Unsubscribe(self.subscription))
        if self._replay is not None:
            with contextlib.suppress(Exception):
                await self._replay.aclose()  # type: ignore[attr-defined]

    async def _subscribe(self) -> Start:
        start: Start = await self._feed.ask(Subscribe(self.subscription), timeout=self._timeout)
        self._floor = start.seq if self._shared is None else 0
        return start

    @property
    def replaying(self) -> bool:
        return self._replay is not None

    async def next(self, timeout: float) -> list[Batch]:
        if self._replay is not None:
            with contextlib.suppress(StopAsyncIteration):
                return [await anext(self._replay)]
            self._replay = None
        sub = self.subscription
        if not len(sub) and not sub.ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wait(), timeout)
        batches = sub.take()
        if self._floor and batches and batches[0].items[0].seq <= self._floor:
            floor = self._floor  # replayed already (a feed restarted behind the journal)
            batches = [Batch([i for i in b.items if i.seq > floor or i.kind == "lagged"])
                       for b in batches]  # fmt: skip
        return batches

    # -- catching up from the journal ------------------------------------------------------

    async def _catch_up(self, since: int) -> AsyncIterator[Batch]:
        if self._shared is None:
            async for page in self._catch_up_local(since):
                yield page
        else:
            async for page in self._catch_up_shared(self._shared, since):
                yield page

    async def _catch_up_local(self, since: int) -> AsyncIterator[Batch]:
        seen = since
        while True:  # up to about the feed's place, while that is far
            where: Start = await self._feed.ask(Where(), timeout=self._timeout)
            head = where.seq
            count = 0
            async for page in self._pages_local(seen, head):
                count += len(page.items)
                yield page
            seen = max(seen, head)
            if count < _PAGE:
                break
        start = await self._subscribe()
        self._floor = max(start.seq, seen)  # a reader ahead of the feed gets nothing twice
        async for page in self._pages_local(seen, start.seq):
            yield page

    async def _pages_local(self, after: int, upto: int) -> AsyncIterator[Batch]:
        events: list[Event] = []
        async for e in self._journal.events(after):
            if e.seq > upto:
                break
            if not is_control(e.task_id):
                events.append(e)
            if len(events) >= _PAGE:
                yield await self._items(events)
                events = []
        if events:
            yield await self._items(events)

    async def _catch_up_shared(self, journal: SharedJournal, since: int) -> AsyncIterator[Batch]:
        seen = await self._since_of(journal, since)
        while True:  # up to about the feed's place, while that is far
            where: Start = await self._feed.ask(Where(), timeout=self._timeout)
            assert where.position is not None  # a shared journal's feed follows it
            until = where.position
            count = 0
            async for page in self._pages_shared(journal, seen, until):
                count += len(page.items)
                yield page
            seen = Since(0, until, until)
            if count < _PAGE:
                break
        start = await self._subscribe()
        assert start.position is not None  # a shared journal's feed follows it
        async for page in self._pages_shared(journal, seen, start.position):
            yield page

    async def _since_of(self, journal: SharedJournal, seq: int) -> Since:
        xid = await journal.xid_of(seq)
        if xid is None:  # no such event (0, or a seq never used): every later seq is missed
            return Since(seq, 0, _NEVER)
        return Since(seq, 0, xid + 1)

    async def _pages_shared(
        self, journal: SharedJournal, seen: Since, until: int
    ) -> AsyncIterator[Batch]:
        after = 0
        while True:
            events = await journal.missed(seen, until, after, _PAGE)
            if not events:
                return
            after = events[-1].seq
            mine = [e for e in events if not is_control(e.task_id)]
            if mine:
                yield await self._items(mine)
            if len(events) < _PAGE:
                return

    async def _items(self, events: Sequence[Event]) -> Batch:
        tasks = await self._journal.get_many(list({e.task_id for e in events}))
        return Batch([item_of_tailed(e, tasks.get(e.task_id)) for e in events])
