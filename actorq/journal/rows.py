"""Tasks and events to and from database rows, and the named SQL blocks of each dialect.

Both backends store the same columns; JSON values travel as text so one codec serves both.
"""

from __future__ import annotations

import functools
import json
import json.encoder
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

import attrs

from actorq.auth import Scope, Token
from actorq.errors import InvalidInput, TaskExpired, TaskNotFound, TaskPurged
from actorq.model import (
    Event,
    EventKind,
    Misfire,
    Progress,
    Schedule,
    ScheduleTask,
    Task,
    TaskState,
)
from actorq.nodes import Node, ServedType
from actorq.queues import QueueSettings, RateLimit
from actorq.retry import RetryPolicy, policy_from_json, policy_from_text, policy_json

TASK_COLUMNS = (
    "id", "type", "queue", "payload", "priority", "state", "attempt", "max_attempts",
    "timeout", "run_at", "created_at", "updated_at", "seq", "metadata", "idempotency_key",
    "result", "error", "started_at", "finished_at", "worker", "lease_expires_at", "retry",
    "progress",
)  # fmt: skip
# "actor" last: a column added later (migration 008), and what seals cover is this tuple.
EVENT_COLUMNS = ("seq", "at", "task_id", "kind", "node", "worker", "data", "actor")
QUEUE_COLUMNS = (
    "name", "paused", "concurrency", "rate_limit", "rate_period", "max_depth", "retention",
    "updated_at", "seq", "retry",
)  # fmt: skip


# One encoder, built once: json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads


# For values the submission rules checked (``actorq.submission``: nested at most 64 deep, so
# never circular): the C encoder made once, without the circular-reference check for which
# ``_encode`` makes one per call. The same text as ``dumps``; None where ``json`` has no C part.
_c_make = getattr(json.encoder, "c_make_encoder", None)
_encode_checked = None
if _c_make is not None:
    _encode_checked = _c_make(None, json.JSONEncoder().default, json.encoder.encode_basestring,
                              None, ":", ",", False, False, True)  # fmt: skip


def dumps_checked(value: Any) -> str:
    """``dumps`` of a payload, metadata or event data that passed the submission rules."""
    if value is None or _encode_checked is None:
        return dumps(value)
    return "".join(_encode_checked(value, 0))


def dumps(value: Any) -> str:
    # No payload, no metadata, no result: the common case, spared the encoder.
    if value is None:
        return "null"
    if value == {} and isinstance(value, dict):
        return "{}"
    return _encode(value)


def task_to_row(task: Task) -> tuple[Any, ...]:
    return (
        task.id, task.type, task.queue, dumps_checked(task.payload), task.priority,
        task.state.value, task.attempt, task.max_attempts, task.timeout, task.run_at,
        task.created_at, task.updated_at, task.seq, dumps_checked(task.metadata),
        task.idempotency_key,
        dumps(task.result), task.error, task.started_at, task.finished_at, task.worker,
        task.lease_expires_at, None if task.retry is None else stored_policy(task.retry),
        _progress_text(task.progress),
    )  # fmt: skip


def task_from_row(r: Sequence[Any]) -> Task:
    """A task from a row (a tuple, or an asyncpg Record, indexed the same way) whose columns
    come in TASK_COLUMNS order, as every query's ``{columns}`` selects them. Positional: this
    runs for every row read (twice for each task a node runs: its claim, its outcome)."""
    payload, metadata, result = r[3], r[13], r[15]
    return Task(
        r[0], r[1], r[2], None if payload == "null" else _loads(payload), r[4], _STATES[r[5]],
        r[6], r[7], r[8], r[9], r[10], r[11], r[12], {} if metadata == "{}" else _loads(metadata),
        r[14], None if result == "null" else _loads(result), r[16], r[17], r[18], r[19], r[20],
        None if r[21] is None else _policy(r[21]), None if r[22] is None else _progress(r[22]),
    )  # fmt: skip


# Tasks mostly share a few policies: each is parsed and written once.
_policy = functools.lru_cache(maxsize=256)(policy_from_text)


@functools.lru_cache(maxsize=256)
def stored_policy(policy: RetryPolicy) -> str:
    """A task's retry policy as its row holds it."""
    return dumps(policy_json(policy))


_STATES = {s.value: s for s in TaskState}


def update_row(t: Task) -> tuple[Any, ...]:
    """The columns an event can change, id first: what both journals' task UPDATE takes."""
    return (
        t.id, t.state.value, t.attempt, t.run_at, t.updated_at, t.seq, dumps(t.result),
        t.error, t.started_at, t.finished_at, t.worker, t.lease_expires_at,
        _progress_text(t.progress),
    )  # fmt: skip


def _progress_text(p: Progress | None) -> str | None:
    return None if p is None else dumps({"fraction": p.fraction, "message": p.message, "at": p.at})


def _progress(text: str) -> Progress:
    d = _loads(text)
    return Progress(float(d["fraction"]), d.get("message"), float(d["at"]))


def event_to_row(event: Event) -> tuple[Any, ...]:
    # A submission's data is what the submission rules checked; other events' may hold a
    # handler's result, which ``dumps`` checks for cycles.
    kind = event.kind
    data = dumps_checked(event.data) if kind is EventKind.SUBMITTED else dumps(event.data)
    return (event.seq, event.at, event.task_id, kind.value, event.node, event.worker, data,
            event.actor)  # fmt: skip


def event_from_row(r: Sequence[Any]) -> Event:
    """An event from a row in EVENT_COLUMNS order (see task_from_row)."""
    return Event(_KINDS[r[3]], r[2], r[1], r[4], _loads(r[6]), worker=r[5], seq=r[0], actor=r[7])


_KINDS = {k.value: k for k in EventKind}


@functools.cache
def table_queries(dialect: str) -> dict[str, str]:
    """The dialect's queries with the column lists (and SQLite's placeholders) filled in, and
    its fragments (blocks named ``_name``) where ``{name}`` stands."""
    filled = {
        "columns": ", ".join(TASK_COLUMNS),
        "placeholders": ", ".join("?" * len(TASK_COLUMNS)),
        "queue_columns": ", ".join(QUEUE_COLUMNS),
        "schedule_columns": ", ".join(SCHEDULE_COLUMNS),
        "schedule_placeholders": ", ".join("?" * len(SCHEDULE_COLUMNS)),
    }
    blocks = queries(dialect)
    fragments = {name[1:]: sql.format(**filled) for name, sql in blocks.items() if name[0] == "_"}
    return {name: sql.format(**filled, **fragments)
            for name, sql in blocks.items() if name[0] != "_"}  # fmt: skip


def queries(dialect: str, file: str = "queries") -> dict[str, str]:
    """The ``-- name: x`` blocks of ``sql/<dialect>/<file>.sql``."""
    text = resources.files("actorq.journal").joinpath(f"sql/{dialect}/{file}.sql").read_text()
    blocks: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("-- name:"):
            name = line.removeprefix("-- name:").strip()
            blocks[name] = ""
        elif name is not None:
            blocks[name] += line + "\n"
    return {k: v.strip() for k, v in blocks.items()}


# A database migrated from a schema version below this one has its projection folded from the
# journal again: version 2 changed how events fold (a claim no longer starts the handler; a
# success clears the error; a cancel writes none), so projections written before disagree.
REFOLD_BELOW = 2


def migrations(dialect: str) -> list[tuple[int, str]]:
    """Numbered schema migrations ``sql/<dialect>/NNN_*.sql``, in order."""
    folder = resources.files("actorq.journal").joinpath(f"sql/{dialect}")
    found = [
        (int(f.name.split("_", 1)[0]), f.read_text())
        for f in folder.iterdir()
        if f.name[:3].isdigit() and f.name.endswith(".sql")
    ]
    return sorted(found)


def encode_cursor(task: Task) -> str:
    """Keyset pagination over ids, newest first (ids are UUIDv7: made from the clock). The
    cursor keeps the form ``created_at~id`` that nodes of earlier versions read and write, so
    a client paging through a cluster mid-upgrade may be answered by either."""
    return f"{task.created_at!r}~{task.id}"


def decode_cursor(cursor: str) -> str:
    """The id a page goes on after (``created_at`` is not needed: ids sort by creation)."""
    try:
        created, task_id = cursor.split("~", 1)
        float(created)
    except ValueError as exc:
        raise InvalidInput(f"invalid cursor {cursor!r}") from exc
    return task_id


PAGE = 1000  # rows per query when a journal walks a whole table


async def events_in_pages(
    fetch: Callable[[int, int], Awaitable[Sequence[Any]]], after_seq: int, until: float | None
) -> AsyncIterator[Event]:
    """Journal rows after ``after_seq`` up to time ``until``, a page at a time; ``fetch(after,
    limit)`` reads one page of rows in seq order."""
    while True:
        rows = await fetch(after_seq, PAGE)
        for row in rows:
            event = event_from_row(row)
            if until is not None and event.at > until:
                return
            yield event
        if len(rows) < PAGE:
            return
        after_seq = int(rows[-1][0])


async def tasks_in_pages(
    fetch: Callable[[str, int], Awaitable[Sequence[Task]]],
) -> AsyncIterator[Task]:
    """Every projection row, a page at a time; ``fetch(after_id, limit)`` reads one in id
    order."""
    last = ""
    while True:
        batch = await fetch(last, PAGE)
        for task in batch:
            yield task
        if len(batch) < PAGE:
            return
        last = batch[-1].id


_DEFAULTS = frozenset({"queue", "priority", "max_attempts", "timeout", "retry"})
NODE_COLUMNS = (
    "node",
    "host",
    "pid",
    "started_at",
    "last_heartbeat",
    "types",
    "queues",
    "version",
    "concurrency",
    "running",
    "paused",
    "drain",
    "gone_at",
)


def node_to_row(node: Node) -> tuple[Any, ...]:
    types = {
        name: {"queue": t.queue, "priority": t.priority, "max_attempts": t.max_attempts,
               "timeout": t.timeout, "retry": None if t.retry is None else policy_json(t.retry)}
        for name, t in node.types.items()
    }  # fmt: skip
    queues = None if node.queues is None else dumps(list(node.queues))
    return (node.node, node.host, node.pid, node.started_at, node.last_heartbeat, dumps(types),
            queues, node.version, node.concurrency, dumps(list(node.running)))  # fmt: skip


def node_from_row(r: Sequence[Any]) -> Node:
    """A node from a row in NODE_COLUMNS order. Defaults missing from a record (written by
    another version) take ServedType's."""
    types = {
        name: ServedType(name, **{k: _default(k, v) for k, v in d.items() if k in _DEFAULTS})
        for name, d in _loads(r[5]).items()
    }
    queues = None if r[6] is None else tuple(_loads(r[6]))
    return Node(r[0], r[1], int(r[2]), float(r[3]), float(r[4]), types, queues, str(r[7]),
                int(r[8]), tuple(_loads(r[9])), bool(r[10]), bool(r[11]),
                None if r[12] is None else float(r[12]))  # fmt: skip


def gone_error(task_id: str, last_kind: str | None) -> TaskNotFound:
    """The error for a task missing from the projection, by how its history ends: purged,
    expired, or no history at all (no such task)."""
    if last_kind == EventKind.PURGED:
        return TaskPurged(task_id)
    if last_kind == EventKind.EXPIRED:
        return TaskExpired(task_id)
    return TaskNotFound(task_id)


def queue_to_row(q: QueueSettings) -> tuple[Any, ...]:
    rate = q.rate_limit
    return (
        q.name, q.paused, q.concurrency, None if rate is None else rate.limit,
        None if rate is None else rate.period, q.max_depth, q.retention, q.updated_at, q.seq,
        None if q.retry is None else dumps(policy_json(q.retry)),
    )  # fmt: skip


def queue_from_row(r: Sequence[Any]) -> QueueSettings:
    """Settings from a row in QUEUE_COLUMNS order."""
    rate = None if r[3] is None else RateLimit(int(r[3]), float(r[4]))
    return QueueSettings(
        r[0], bool(r[1]), r[2], rate, r[5], None if r[6] is None else float(r[6]),
        retry=policy_from_text(r[9]), updated_at=float(r[7]), seq=int(r[8]),
    )  # fmt: skip


def _default(key: str, value: Any) -> Any:
    return policy_from_json(value) if key == "retry" and value is not None else value


SCHEDULE_COLUMNS = (
    "name", "cron", "every", "timezone", "task", "paused", "misfire", "next_run_at",
    "last_run_at", "last_task_id", "fired", "created_at", "updated_at", "anchor", "seq",
)  # fmt: skip


def schedule_to_row(s: Schedule) -> tuple[Any, ...]:
    return (
        s.name, s.cron, s.every, s.timezone, dumps(attrs.asdict(s.task)), s.paused,
        s.misfire.value, s.next_run_at, s.last_run_at, s.last_task_id, s.fired, s.created_at,
        s.updated_at, s.anchor, s.seq,
    )  # fmt: skip


def schedule_from_row(r: Sequence[Any]) -> Schedule:
    """A schedule from a row in SCHEDULE_COLUMNS order."""
    return Schedule(
        r[0], ScheduleTask(**_loads(r[4])), r[1], r[2], r[3], bool(r[5]), Misfire(r[6]), r[7],
        r[8], r[9], int(r[10]), r[11], r[12], r[13], int(r[14]),
    )  # fmt: skip


TOKEN_COLUMNS = ("name", "scope", "hash", "created_at", "created_by", "revoked_at")


def token_to_row(t: Token) -> tuple[Any, ...]:
    return (t.name, t.scope.value, t.hash, t.created_at, t.created_by, t.revoked_at)


def token_from_row(r: Sequence[Any]) -> Token:
    """A token from a row in TOKEN_COLUMNS order."""
    return Token(r[0], Scope(r[1]), r[2], float(r[3]), r[4], None if r[5] is None else float(r[5]))
