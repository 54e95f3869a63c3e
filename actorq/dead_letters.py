"""Dead letters: what an operator may select of them, and the bulk retry and purge that go
through them in bounded chunks (many short transactions, never one giant one).

A retried dead letter is queued again with a fresh attempt budget; a purged one leaves the
live projection through a ``purged`` event, its history kept in the journal. Both events
record who asked (``by``: ``api:<client address>``, ``cli:<user>@<host>``).
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from actorq.errors import InvalidInput
from actorq.journal.base import DeadAction, Op, Outcome, Selection, Settled, SettleDead
from actorq.submission import MAX_TEXT

CHUNK = 500  # dead letters per transaction
MAX_IDS = 1000  # ids one request may name


def selection_from_json(body: Any) -> Selection:
    """``{"ids": [...]}``, or ``{"queue": .., "type": ..}``, or nothing (None, ``{}``): all."""
    if body is None:
        return Selection()
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object: {ids} or {queue, type}, or empty")
    unknown = sorted(set(body) - {"ids", "queue", "type"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}: give ids, or queue and type")
    ids = body.get("ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(_fit(i) for i in ids):
            raise InvalidInput(f"ids must be a list of task ids (strings of 1 to {MAX_TEXT})")
        if len(ids) > MAX_IDS:
            raise InvalidInput(f"ids may name at most {MAX_IDS} tasks; select by queue/type")
    filters = {}
    for name in ("queue", "type"):
        value = body.get(name)
        if value is not None and not _fit(value):
            raise InvalidInput(f"{name} must be a string of 1 to {MAX_TEXT} characters")
        filters[name] = value
    return Selection(None if ids is None else list(dict.fromkeys(ids)), **filters)


def _fit(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_TEXT
        and not any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in value)
    )


def cli_actor() -> str:
    """Who a command line acts as: ``cli:user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


async def settle(
    run: Callable[[Op], Awaitable[Outcome]],
    action: DeadAction,
    selection: Selection,
    *,
    clock: Callable[[], float],
    node: str,
    by: str,
    chunk: int = CHUNK,
) -> int:
    """Retry or purge every dead letter of ``selection``, ``chunk`` per operation; how many.

    ``run`` commits one operation (the node's journal writer, or the journal itself)."""
    done = 0
    if selection.ids is not None:
        ids = list(selection.ids)
        for start in range(0, len(ids), chunk):
            part = Selection(ids[start : start + chunk], selection.queue, selection.type)
            settled = await _one(run, SettleDead(action, part, clock(), node, by, limit=chunk))
            done += len(settled.tasks)
        return done
    after: str | None = None
    while True:
        op = SettleDead(action, selection, clock(), node, by, after, chunk)
        settled = await _one(run, op)
        done += len(settled.tasks)
        if settled.scanned < chunk or settled.last is None:
            return done
        after = settled.last


async def _one(run: Callable[[Op], Awaitable[Outcome]], op: SettleDead) -> Settled:
    settled: Settled = (await run(op)).unwrap()
    return settled
