"""Following a PostgreSQL journal live by transaction id (xid8), not by seq: see ``read_tail``
(``PostgresJournal.tail`` runs it in a read-only repeatable-read transaction)."""

from __future__ import annotations

import asyncpg

from actorq.journal.rows import event_from_row, queries
from actorq.model import Event

_Q = {name: queries("postgres")[name] for name in ("horizon", "tail", "tail_floor")}


async def read_tail(conn: asyncpg.Connection, after: int, limit: int) -> tuple[list[Event], int]:
    """Events committed since position ``after``, and the position to pass next time (see
    ``PostgresJournal.tail``); ``conn`` is in a read-only repeatable-read transaction."""
    horizon = int(await conn.fetchval(_Q["horizon"]))
    while True:
        window, end, more = await _tail_window(conn, after, horizon, limit)
        floor = await conn.fetchval(_Q["tail_floor"], end)
        ready = _safe_prefix([events for _, events in window], floor)
        if ready or not more:
            break
        limit *= 2  # the seq that holds everything back lies further on
    if ready == len(window):
        position = end  # everything below the end was handed out
    elif ready:
        position = window[ready][0]  # the first transaction held back
    else:
        position = after
    events = sorted((e for _, group in window[:ready] for e in group), key=lambda e: e.seq)
    return events, position


def _safe_prefix(groups: list[list[Event]], floor: int | None) -> int:
    """How many leading transactions (in xid order) can be handed out now.

    A prefix may go out only if each of its seqs is below every seq still held back (later
    transactions of ``groups`` and ``floor``, the lowest seq committed past them): else a task
    whose events span two transactions could be seen out of order.
    """
    above = [0] * len(groups)
    lowest = floor
    for k in range(len(groups) - 1, -1, -1):
        above[k] = lowest if lowest is not None else 1 << 62
        first = groups[k][0].seq
        lowest = first if lowest is None else min(lowest, first)
    best, highest = 0, 0
    for k, group in enumerate(groups):
        highest = max(highest, group[-1].seq)
        if highest < above[k]:
            best = k + 1
    return best


_Window = list[tuple[int, list[Event]]]  # (xid, its events in seq order), in xid order


async def _tail_window(
    conn: asyncpg.Connection, after: int, horizon: int, limit: int
) -> tuple[_Window, int, bool]:
    """Whole transactions with an xid in [after, horizon): at most ``limit`` rows, unless the
    first transaction alone is larger. Also the xid the window ends at, and whether it was cut
    short of the horizon."""
    rows = await conn.fetch(_Q["tail"], after, horizon, limit + 1)
    more = len(rows) > limit
    end = horizon
    if more:
        end = int(rows[limit][0])  # that transaction may go on past the limit: leave it out
        rows = [r for r in rows if r[0] < end]
        if not rows:
            rows = await conn.fetch(_Q["tail"], end, end + 1, None)
            end += 1
    window: _Window = []
    for row in rows:
        event = event_from_row(tuple(row)[1:])
        if window and window[-1][0] == row[0]:
            window[-1][1].append(event)
        else:
            window.append((int(row[0]), [event]))
    return window, end, more
