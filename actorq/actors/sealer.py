"""Sealer: seals the journal as it grows, so an altered row can be told (actorq.journal.seals).

Every ``interval`` seconds (``ACTORQ_SEAL_SECONDS``, default 1) it notes how far the journal
reaches (a ``SealMark``) and seals up to the mark it noted before once that one is final:
on SQLite at once, on PostgreSQL once every transaction that might still commit a seq up to
the mark has ended. Rows are thus sealed within one or two intervals of their commit. Every
node runs one; the journal lets one seal at a time (SQLite's write lock, an advisory lock on
PostgreSQL), and the others find nothing left to seal. When the node stops, ``seal_all``
seals what its last writes left (the runtime calls it once every actor has stopped).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from actorq.actors.core import Actor
from actorq.actors.ticker import Ticker
from actorq.errors import ActorqError
from actorq.journal.base import Journal
from actorq.journal.rows import EVENT_COLUMNS
from actorq.journal.seals import Seal, SealMark, make_seal

log = logging.getLogger("actorq.sealer")

CHUNK = 5000  # rows per seal (and per sealing transaction), at most


@attrs.frozen
class SealNow:
    pass


async def seal_through(
    journal: Journal,
    upto: int,
    key: bytes | None,
    node: str,
    clock: Callable[[], float],
    chunk: int = CHUNK,
) -> list[Seal]:
    """Seal every row up to seq ``upto`` (which must be final), ``chunk`` rows a seal."""
    make = functools.partial(_make, columns=EVENT_COLUMNS, key=key, at=clock(), node=node)
    written: list[Seal] = []
    while (seal := await journal.write_seal(upto, chunk, make)) is not None:
        written.append(seal)
        if seal.last_seq >= upto:
            break
    return written


def _make(
    prev: Seal | None,
    rows: Sequence[Sequence[Any]],
    last: int,
    *,
    columns: Sequence[str],
    key: bytes | None,
    at: float,
    node: str,
) -> Seal:
    return make_seal(prev, rows, last, columns, key, at, node)


async def seal_all(
    journal: Journal,
    key: bytes | None,
    node: str,
    clock: Callable[[], float] = time.time,
    wait: float = 5.0,
) -> list[Seal]:
    """Seal the whole journal as it stands, waiting up to ``wait`` seconds for transactions
    still in flight to end (PostgreSQL). What stays unsealed, the next sealer seals."""
    mark = await journal.seal_mark()
    deadline = time.monotonic() + wait
    while not await journal.mark_final(mark):
        if time.monotonic() > deadline:
            log.warning("transactions still in flight: seqs up to %d left unsealed", mark.seq)
            return []
        await asyncio.sleep(0.05)
    return await seal_through(journal, mark.seq, key, node, clock)


class Sealer(Actor):
    def __init__(
        self,
        journal: Journal,
        node: str,
        clock: Callable[[], float],
        interval: float,
        key: bytes | None,
    ) -> None:
        self._journal = journal
        self._node = node
        self._clock = clock
        self._interval = interval
        self._key = key
        self._pending: SealMark | None = None
        self._ticker: Ticker | None = None
        self.sealed = 0  # seals written by this node since it started, for tests and logs

    async def on_start(self) -> None:
        self._ticker = Ticker(self.ref, SealNow(), self._interval)
        self._ticker.start()
        await self.ref.tell(SealNow())

    async def on_stop(self) -> None:
        if self._ticker is not None:
            await self._ticker.stop()

    async def receive(self, message: object) -> object:
        if isinstance(message, SealNow):
            try:
                await self._tick()
            except ActorqError as exc:  # the database is away: the next tick tries again
                log.warning("sealing failed: %s", exc)
        return None

    async def _tick(self) -> None:
        journal = self._journal
        if self._pending is not None and await journal.mark_final(self._pending):
            await self._seal(self._pending.seq)
            self._pending = None
        if self._pending is None:
            mark = await journal.seal_mark()
            if await journal.mark_final(mark):  # SQLite always; PostgreSQL when idle
                await self._seal(mark.seq)
            else:
                self._pending = mark

    async def _seal(self, upto: int) -> None:
        written = await seal_through(self._journal, upto, self._key, self._node, self._clock)
        self.sealed += len(written)
