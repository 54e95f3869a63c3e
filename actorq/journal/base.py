"""The storage seam: the ``Journal`` protocol that actors and the API call, and its operations.

Writes are *operations* (submit, claim, append a transition, promote due work, reap leases)
handed over in batches: a backend runs a whole batch in one transaction, so many callers share
one commit (group commit). Each operation succeeds or fails on its own: a domain error in one
(a duplicate idempotency key, an invalid transition) leaves the others in the batch untouched.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from actorq.auth import Token
from actorq.journal.seals import MakeSeal, Seal, SealMark
from actorq.model import Event, EventKind, NewTask, Page, Schedule, Task, TaskFilter, TaskState
from actorq.nodes import Node, Orders
from actorq.queues import QueueActivity, QueueSettings, Tier


@attrs.frozen
class Submit:
    """Create tasks (all or none). Result: the created tasks."""

    tasks: Sequence[NewTask]
    at: float
    node: str
    actor: str | None = None  # who asked (see Event.actor); None: the node


@attrs.frozen
class Claim:
    """Claim ready tasks, best first, for ``workers`` (one each, in order), among those of
    ``queues`` and ``types`` (None: any). A node claims only the types it has handlers for.

    ``tiers``, when given, orders the queues (``--queues`` with strict order or weights):
    each tier in turn fills the slots the earlier ones left, a weighted tier sharing them in
    proportion to its weights, counting ``served`` (what the node took lately, by queue).
    Queues whose settings limit claims (paused, a concurrency or rate limit) give at most what
    their limits allow (see ``journal.claims``).

    ``limited`` says that the node knows a served queue to limit claims: the claim then goes
    straight to the read that locks the limits, without first asking whether there are any
    (the journal still finds them if the node does not know yet).

    Result: the claimed tasks, at most one per worker.
    """

    workers: Sequence[str]
    at: float
    node: str
    lease_seconds: float
    queues: Sequence[str] | None = None
    types: Sequence[str] | None = None
    tiers: Sequence[Tier] | None = None
    served: Mapping[str, int] | None = None
    limited: bool = False


@attrs.frozen
class Start:
    """A worker is about to run the handler of ``task_id``, which it holds (``claimed`` by
    ``claimer``). The attempt counts from here.

    Priority holds across prefetch: if a ready task of the node's ``queues`` and ``types``
    ranks before the held one (``queues.outranks``: by ``tiers``, then priority), the held
    task goes back to its place in the queue and the better one is claimed and started for
    ``worker`` instead. If the held task's queue is paused, it goes back to the queue and
    nothing starts. Result: a ``Started``.
    """

    task_id: str
    claimer: str
    worker: str
    at: float
    node: str
    lease_seconds: float
    queues: Sequence[str] | None = None
    types: Sequence[str] | None = None
    tiers: Sequence[Tier] | None = None  # --queues order: an earlier tier's task goes first


@attrs.frozen
class Started:
    """The task whose handler may start now (None: none may, its queue is paused), and the
    held task given back to the queue, if any."""

    task: Task | None
    released: str | None = None


@attrs.frozen
class Append:
    """Apply one transition event to its task. Result: the task after it.

    ``worker``/``attempt``, when given, must still match the task: an outcome reported by a
    worker whose lease was already reaped (and the task claimed again) is refused as stale.
    """

    event: Event
    worker: str | None = None
    attempt: int | None = None
    actor: str | None = None  # who asked (see Event.actor); None: the node


@attrs.frozen
class PromoteDue:
    """Move scheduled tasks whose run_at has come to queued. Result: the tasks promoted."""

    at: float
    node: str
    limit: int = 1000


@attrs.frozen
class ReapExpired:
    """Re-queue (or dead-letter) running tasks whose lease has expired. Result: those tasks."""

    at: float
    node: str
    limit: int = 1000


@attrs.frozen
class ExtendLeases:
    """Heartbeat: push the leases of ``worker``-held running tasks to ``until``. Not journaled.

    Result: the number of tasks extended.
    """

    task_ids: Sequence[str]
    until: float


@attrs.frozen
class Selection:
    """Which dead letters an operator's bulk action takes: the ``ids`` named (None: any),
    of ``queue`` and ``type`` (None: any)."""

    ids: Sequence[str] | None = None
    queue: str | None = None
    type: str | None = None


class DeadAction(enum.StrEnum):
    RETRY = "retry"  # queued again with a fresh attempt budget
    PURGE = "purge"  # removed from the live projection (history kept)


@attrs.frozen
class SettleDead:
    """Retry or purge up to ``limit`` dead letters of ``selection``, in id (creation)
    order after the id ``after``; ``by`` (who asked) goes into each event. Rows another batch has
    locked are passed over. Result: a ``Settled``; a caller goes on from its ``last`` until
    fewer than ``limit`` were scanned, so a million dead letters are many short transactions.
    """

    action: DeadAction
    selection: Selection
    at: float
    node: str
    by: str
    after: str | None = None
    limit: int = 500
    actor: str | None = None  # who asked (see Event.actor); None: the node


@attrs.frozen
class Settled:
    tasks: Sequence[Task]  # retried (as they are now) or purged (as they were)
    scanned: int  # dead letters looked at; a retry refused (its key is taken) is skipped
    last: str | None  # the id of the last one scanned


@attrs.frozen
class Expire:
    """Remove from the projection up to ``limit`` finished tasks whose ``finished_at`` lies
    more than ``retention`` seconds before ``at`` (``overrides``: another period for these
    queues; ``math.inf``: only the queues of ``overrides``), one ``expired`` event each.
    Rows another node is expiring are passed over.
    Result: the tasks expired (as they were)."""

    at: float
    node: str
    retention: float
    overrides: Mapping[str, float] = attrs.field(factory=dict)
    limit: int = 500


@attrs.frozen
class ConfigureQueue:
    """Change the settings of queue ``name`` (checked, as ``queues.parse_patch`` gives them)
    with one ``queue_configured`` event. Result: the queue's ``QueueSettings`` after it."""

    name: str
    changes: Mapping[str, Any]
    at: float
    node: str
    actor: str | None = None  # who asked (see Event.actor); None: the node


class SaveMode(enum.StrEnum):
    CREATE = "create"  # a new schedule: refused if the name is taken
    UPDATE = "update"  # an existing one, unchanged since it was read (``expect_seq``)
    DECLARE = "declare"  # the App's: created, or updated if its definition differs


@attrs.frozen
class SaveSchedule:
    """Save ``schedule``'s definition; its anchor and next tick are decided in the batch,
    against the row as the transaction sees it (``actorq.recurrence.plan_save``). A declared
    schedule keeps the row's ``paused`` (an operator's choice). Result: the schedule as saved,
    or as it was when a declaration found nothing to change."""

    schedule: Schedule
    at: float
    node: str
    mode: SaveMode
    expect_seq: int | None = None
    actor: str | None = None  # who asked (see Event.actor); None: the node


@attrs.frozen
class DeleteSchedule:
    """Delete schedule ``name``. Result: the schedule as it was."""

    name: str
    at: float
    node: str
    actor: str | None = None  # who asked (see Event.actor); None: the node


@attrs.frozen
class PurgeQueue:
    """Cancel up to ``limit`` tasks of ``queue`` in ``states``, giving ``reason``. Result:
    the tasks cancelled (fewer than ``limit``: none is left)."""

    queue: str
    states: Sequence[TaskState]
    at: float
    node: str
    reason: str
    limit: int = 1000
    actor: str | None = None  # who asked (see Event.actor); None: the node


@attrs.frozen
class FireSchedules:
    """Fire the schedules due at ``at``: each due row, locked, enqueues its task (or skips its
    missed ticks) and moves to its next tick in this one transaction, so each tick is fired
    once across every node. Result: the schedules after firing."""

    at: float
    node: str
    limit: int = 100


Op = (
    Submit | Claim | Start | Append | PromoteDue | ReapExpired | ExtendLeases
    | ConfigureQueue | PurgeQueue | SaveSchedule | DeleteSchedule | FireSchedules
    | SettleDead | Expire
)  # fmt: skip


def needs_flush(ops: Sequence[Op]) -> bool:
    """Whether committing ``ops`` must wait for the disk.

    Claims, starts, promotions, reaps and heartbeats may skip it: lost in a crash, they lose
    nothing acknowledged (the tasks are claimed, promoted or reaped again; a lost start gives
    the attempt back), and the log's order means
    no later, flushed commit survives without them. Anything else carries a submission, an
    outcome or a cancellation that someone was told about.
    """
    return not all(
        isinstance(op, _RELAXED) or (isinstance(op, Append) and op.event.kind is EventKind.STARTED)
        for op in ops
    )


# An expiry lost in a crash is simply swept again.
_RELAXED = (Claim, Start, ExtendLeases, PromoteDue, ReapExpired, Expire)


@attrs.frozen
class Change:
    """One applied event with the task's state before it and the task after it."""

    event: Event
    before: TaskState | None
    after: Task


@attrs.frozen
class Outcome:
    """The result of one operation of a batch: a value, or the domain error it raised."""

    value: Any = None
    error: BaseException | None = None
    changes: Sequence[Change] = ()
    control: Sequence[Event] = ()  # applied control events (a queue's settings changed)

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


@attrs.frozen
class Notice:
    """Word from another process sharing the journal: ``ready`` (new work in ``queue``) or
    ``cancel`` (``task_id`` was cancelled while running, possibly here)."""

    kind: str
    queue: str | None = None
    task_id: str | None = None
    node: str | None = None  # ``node``: an operator's wish for this node changed


@attrs.frozen
class Head:
    """Where the journal and the projection stand."""

    journal_seq: int
    projection_seq: int


class Journal(Protocol):
    """What the runtime needs from storage. SQLite and PostgreSQL both fulfil it."""

    async def open(self) -> None:
        """Connect, apply migrations, and bring the projection up to the journal's head."""

    async def close(self) -> None: ...

    async def subscribe(self, on_notice: Callable[[Notice], None]) -> None:
        """Call ``on_notice`` for notices from other processes (PostgreSQL: LISTEN/NOTIFY).

        A backend with a single process per journal (SQLite) never calls it; the runtime's
        slow fallback poll covers work added by another process there.
        """

    async def run(self, ops: Sequence[Op]) -> list[Outcome]:
        """Run a batch of operations in one transaction; one outcome per op, in order."""

    async def run_in(self, connection: Any, ops: Sequence[Op]) -> list[Outcome]:
        """Run ``ops`` inside the caller's own open transaction on ``connection``.

        Nothing is committed here: the operations take effect if and only if the caller
        commits. PostgreSQL only; SQLite raises InvalidInput.
        """

    async def get(self, task_id: str) -> Task:
        """The task; ``TaskNotFound`` if none, ``TaskPurged``/``TaskExpired`` (kinds of it)
        for one that left the projection."""

    async def peek_ready(
        self, queues: Sequence[str] | None, types: Sequence[str] | None
    ) -> Task | None:
        """The best ready task of these queues and types (None: any), read without a lock."""

    async def list_tasks(self, query: TaskFilter, limit: int, cursor: str | None) -> Page: ...

    async def history(self, task_id: str) -> list[Event]:
        """Every event of the task, also once it left the projection (purged, expired)."""

    async def get_many(self, task_ids: Sequence[str]) -> dict[str, Task]:
        """The tasks among ``task_ids`` that exist, by id."""

    async def counts(self) -> dict[tuple[str, TaskState], int]:
        """Number of tasks by (queue, state)."""

    async def next_due(self) -> float | None:
        """The earliest run_at among scheduled tasks."""

    async def next_lease_expiry(self) -> float | None: ...

    async def running_on(self, node: str) -> list[Task]:
        """Running tasks whose worker id belongs to ``node``."""

    async def head(self) -> Head: ...

    def events(self, after_seq: int = 0, until: float | None = None) -> AsyncIterator[Event]:
        """Every journal event after ``after_seq`` in seq order (up to time ``until``)."""

    def tasks(self) -> AsyncIterator[Task]:
        """Every row of the live projection."""

    async def replace_projection(
        self,
        tasks: Sequence[Task],
        seq: int,
        queues: Sequence[QueueSettings] | None = None,
        schedules: Sequence[Schedule] | None = None,
    ) -> None:
        """Swap the live projection for ``tasks`` (rebuild from a replay) in one transaction,
        and the queues and schedules projections too when given: no reader ever sees one
        rebuilt and another not."""

    # -- schedules: their own projection, folded from the ``schedule:NAME`` events ---------

    async def schedules(self) -> list[Schedule]:
        """Every schedule, by name."""

    async def get_schedule(self, name: str) -> Schedule:
        """Raises ``ScheduleNotFound``."""

    async def next_schedule_due(self) -> float | None:
        """The earliest next tick among schedules that are not paused."""

    async def replace_schedules(self, schedules: Sequence[Schedule]) -> None:
        """Swap the schedules projection for ``schedules`` (rebuild from a replay)."""

    # -- nodes: soft state, renewed by heartbeats, not journaled (see actorq.nodes) ----------

    async def register_node(self, node: Node, *, start: bool = False) -> Orders:
        """Record ``node`` and what it serves, or refresh its record: the node heartbeat.
        Answers what operators ask of it; ``start`` (a new process) clears those wishes."""

    async def remove_node(self, node: str) -> None:
        """Forget node ``node``; nothing happens if it is not recorded."""

    async def leave_node(self, node: str, at: float) -> None:
        """Mark node ``node`` gone at ``at`` (it stops): it stays listed a while."""

    async def forget_nodes(self, before: float) -> None:
        """Drop the records of nodes whose last heartbeat is older than ``before``."""

    async def live_nodes(self, since: float) -> list[Node]:
        """The nodes not gone whose last heartbeat is at ``since`` or later, by node id."""

    async def list_nodes(self, since: float) -> list[Node]:
        """Every node whose last heartbeat is at ``since`` or later, gone ones too."""

    async def get_node(self, node: str) -> Node | None:
        """Node ``node``'s record, or None."""

    async def command_node(self, node: str, paused: bool | None, drain: bool) -> None:
        """Record an operator's wish for ``node`` (None: leave ``paused`` as it is); a shared
        journal also tells the other nodes at once (a ``node`` notice)."""

    async def queued_by_type(self) -> dict[tuple[str, str], int]:
        """Number of queued tasks by (queue, type)."""

    # -- queues ----------------------------------------------------------------------------

    async def queue_settings(self) -> list[QueueSettings]:
        """Every configured queue's settings, by name (a queue only tasks name has none)."""

    async def queue_activity(self, since: float) -> QueueActivity:
        """Per queue: the run_at of its oldest queued task, and tasks finished at ``since``
        or later."""

    async def replace_queues(self, queues: Sequence[QueueSettings]) -> None:
        """Swap the queues projection for ``queues`` (rebuild from a replay)."""

    # -- tokens: not journaled (a secret's hash has no place in an audit trail) ------------

    async def create_token(self, token: Token) -> None:
        """Store a new token, durably; ``DuplicateToken`` if its name was ever used."""

    async def tokens(self) -> list[Token]:
        """Every token, revoked ones included, by name."""

    async def revoke_token(self, name: str, at: float) -> Token:
        """Revoke token ``name`` (again: nothing changes); ``TokenNotFound`` if none."""

    # -- seals and archives (actorq.journal.seals, actorq.journal.archive) ------------------

    async def seal_mark(self) -> SealMark:
        """How far the journal could be sealed once the mark is final."""

    async def mark_final(self, mark: SealMark) -> bool:
        """Whether no transaction still in flight can commit a seq up to ``mark.seq``."""

    async def write_seal(self, upto: int, limit: int, make: MakeSeal) -> Seal | None:
        """Seal the rows after the latest seal, up to seq ``upto`` and at most ``limit`` of
        them, with ``make``; one sealer at a time. None: nothing to seal, or another sealer
        is at it."""

    async def seal_head(self) -> Seal | None:
        """The latest seal."""

    def seal_list(self, after_last_seq: int = 0) -> AsyncIterator[Seal]:
        """Every seal ending after ``after_last_seq``, in seq order."""

    def journal_rows(self, after_seq: int = 0, upto: int | None = None) -> AsyncIterator[Any]:
        """Journal rows as stored (``rows.EVENT_COLUMNS``) after ``after_seq``, in seq order."""

    async def archived_through(self) -> int:
        """The last seq of the archived ranges (0: none)."""

    async def record_verification(self, at: float, ok: bool, head: int, report: str) -> None:
        """Keep the outcome of a verify (``report``: its JSON) for the dashboard."""

    async def last_verification(self) -> tuple[float, bool, int, str] | None:
        """The latest verify's (at, ok, head seq, report JSON)."""

    async def remove_archived(self, seals: Sequence[Seal], segment: str, at: float) -> int:
        """Record ``seals`` as archived in ``segment`` and delete their rows, in one
        transaction: the one delete the append-only rule allows. Returns the rows removed."""


@attrs.frozen
class Since:
    """What a stream reader of a shared journal has seen: every event of a transaction below
    tail position ``first``, and of those in [``first``, ``end``) the ones up to seq ``seq``
    (the tail window it was last handed, in seq order)."""

    seq: int
    first: int
    end: int


@runtime_checkable
class SharedJournal(Protocol):
    """A journal several nodes write at once (PostgreSQL). A node learns of the others'
    commits only by following the journal itself, through ``tail``."""

    async def tail_position(self) -> int:
        """Where a follower starting now begins: everything committed later lies beyond."""

    async def tail(self, after: int = 0, limit: int = 1000) -> tuple[list[Event], int]:
        """Events committed since position ``after`` (each task's in order, none skipped,
        none twice), and the position to pass next time."""

    async def get_many(self, task_ids: Sequence[str]) -> dict[str, Task]:
        """The tasks among ``task_ids`` that exist, by id."""

    async def xid_of(self, seq: int) -> int | None:
        """The tail position (transaction id) event ``seq`` was committed at; None if none."""

    async def missed(self, since: Since, until: int, after: int, limit: int) -> list[Event]:
        """A page of the events a stream reader at ``since`` has not seen, among those
        committed below tail position ``until``, in seq order from seq ``after`` on."""
