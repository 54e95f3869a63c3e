"""Nodes and the task types they serve: what a cluster of nodes running different code knows.

Each node records in the database the task types it has handlers for (with the defaults a
submission of each inherits) and the queues it works on, and renews that record at every
heartbeat. A node is *live* while its last heartbeat lies within ``LIVENESS_INTERVALS``
heartbeat intervals: three, so one lost or late heartbeat never makes a node look gone.

A submission's type is resolved through a ``Catalog``: the receiving node's own registry
first, then the types of the live nodes (``Cluster``). So any API node accepts a task that
some live node can run, even without importing its handler.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

from actorq.errors import InvalidTransition, NodeNotFound, UnknownTaskType
from actorq.model import TypeDefaults
from actorq.retry import RetryPolicy
from actorq.wire import iso

if TYPE_CHECKING:
    from actorq.journal.base import Journal

LIVENESS_INTERVALS = 3
"""A node is live while its last heartbeat is at most this many heartbeat intervals old."""


GONE_KEPT_SECONDS = 3600.0
"""A node gone (by goodbye or silence) stays listed, marked gone, this long after its last
heartbeat; then a heartbeat of any node forgets it."""


def liveness_horizon(now: float, heartbeat_interval: float) -> float:
    """The oldest last heartbeat of a node still counted as live at ``now``."""
    return now - LIVENESS_INTERVALS * heartbeat_interval


@attrs.frozen
class Orders:
    """What operators ask of a node (its record's wishes), as its heartbeat reads them."""

    paused: bool = False
    drain: bool = False


class Catalog(Protocol):
    """Task types by name (a ``Registry`` is one); ``get`` raises ``UnknownTaskType``."""

    def get(self, name: str) -> TypeDefaults: ...


@attrs.frozen
class ServedType:
    """A task type as a node serves it: its name and its submission defaults."""

    name: str
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    timeout: float | None = None
    retry: RetryPolicy | None = None

    @classmethod
    def of(cls, name: str, defaults: TypeDefaults) -> ServedType:
        return cls(name, defaults.queue, defaults.priority, defaults.max_attempts,
                   defaults.timeout, defaults.retry)  # fmt: skip


@attrs.frozen
class Node:
    """One node's record: who it is, when it last said so, and what it serves."""

    node: str
    host: str
    pid: int
    started_at: float
    last_heartbeat: float
    types: Mapping[str, ServedType]
    queues: tuple[str, ...] | None = None  # None: every queue
    version: str = ""
    concurrency: int = 0
    running: tuple[str, ...] = ()  # the tasks it held (claimed or running) at its heartbeat
    # An operator's wishes, written on any node, heard by this one at its heartbeat:
    paused: bool = False  # take no new work
    drain: bool = False  # finish what runs, then stop
    gone_at: float | None = None  # when it said goodbye

    def serves(self, type_: str, queue: str) -> bool:
        return type_ in self.types and (self.queues is None or queue in self.queues)


@attrs.frozen
class ClusterType:
    """A task type some live node serves, with its defaults and the nodes serving it."""

    defaults: ServedType
    nodes: tuple[str, ...]


@attrs.frozen
class Cluster:
    """The live nodes at one moment, and the task types they serve between them.

    Nodes may disagree on a type's defaults while a deployment rolls out: the node ``own``
    (the one asking) wins for the types it serves itself, else the most recently started
    node (the newest code).
    """

    nodes: tuple[Node, ...] = ()
    own: str | None = None
    types: Mapping[str, ClusterType] = attrs.field(init=False)

    @types.default
    def _types(self) -> dict[str, ClusterType]:
        newest_first = sorted(self.nodes, key=lambda n: (n.node != self.own, -n.started_at,
                                                         n.node))  # fmt: skip
        found: dict[str, ClusterType] = {}
        for node in newest_first:
            for name, served in node.types.items():
                known = found.get(name)
                nodes = (node.node,) if known is None else (*known.nodes, node.node)
                found[name] = ClusterType(served if known is None else known.defaults, nodes)
        return {name: attrs.evolve(t, nodes=tuple(sorted(t.nodes))) for name, t in
                sorted(found.items())}  # fmt: skip

    def get(self, name: str) -> ServedType:
        known = self.types.get(name)
        if known is None:
            raise UnknownTaskType(name)
        return known.defaults

    def serves(self, type_: str, queue: str) -> bool:
        return any(node.serves(type_, queue) for node in self.nodes)


@attrs.frozen
class Layered:
    """A catalog that asks ``first`` (the node's own registry), then ``then`` (the cluster)."""

    first: Catalog
    then: Catalog

    def get(self, name: str) -> TypeDefaults:
        try:
            return self.first.get(name)
        except UnknownTaskType:
            return self.then.get(name)


def waiting_for_handler(queued: Mapping[tuple[str, str], int], cluster: Cluster) -> dict[str, int]:
    """Queued tasks by type that no live node would claim: no node serves their type on their
    queue. ``queued``: counts by (queue, type)."""
    waiting: dict[str, int] = {}
    for (queue, type_), n in queued.items():
        if not cluster.serves(type_, queue):
            waiting[type_] = waiting.get(type_, 0) + n
    return dict(sorted(waiting.items()))


def names_in(items: Sequence[object]) -> list[str]:
    """The ``type`` of each submission in ``items`` that names one (to resolve them first)."""
    return [t for i in items if isinstance(i, Mapping) and isinstance(t := i.get("type"), str)]


async def catalog_from_journal(
    journal: Journal,
    local: Catalog,
    names: Collection[str],
    heartbeat_interval: float,
    now: float,
) -> Catalog:
    """For a process that runs no node (it writes the journal directly): ``local``, then the
    types of the live nodes, read from the journal only if ``names`` holds one ``local`` does
    not know."""
    for name in names:
        try:
            local.get(name)
        except UnknownTaskType:
            break
    else:
        return local
    nodes = await journal.live_nodes(liveness_horizon(now, heartbeat_interval))
    return Layered(local, Cluster(tuple(nodes)))


# -- the nodes registry, as operators see it ---------------------------------------------------

COMMANDS = {"pause": (True, False), "resume": (False, False), "drain": (None, True)}
"""An operator's command -> (paused, drain) written to the node's record (None: unchanged)."""


def node_status(node: Node, now: float, heartbeat_interval: float) -> str:
    """``live``, or ``gone``: said goodbye, or silent past its lease (``LIVENESS_INTERVALS``
    heartbeats: the lease its tasks have), whose tasks the reaper re-queues."""
    silent = node.last_heartbeat < liveness_horizon(now, heartbeat_interval)
    return "gone" if node.gone_at is not None or silent else "live"


def describe_node(node: Node, now: float, heartbeat_interval: float) -> dict[str, object]:
    """A node as the API and CLI show it."""
    status = node_status(node, now, heartbeat_interval)
    return {
        "id": node.node, "host": node.host, "pid": node.pid, "version": node.version,
        "status": status, "started_at": iso(node.started_at),
        "last_heartbeat": iso(node.last_heartbeat),
        "gone_at": None if node.gone_at is None else iso(node.gone_at),
        "concurrency": node.concurrency,
        "queues": None if node.queues is None else list(node.queues),
        "types": sorted(node.types), "running": list(node.running) if status == "live" else [],
        "paused": node.paused, "draining": node.drain,
    }  # fmt: skip


async def list_nodes(
    journal: Journal, now: float, heartbeat_interval: float
) -> list[dict[str, object]]:
    """The live nodes and those gone in the last ``GONE_KEPT_SECONDS``, by id."""
    found = await journal.list_nodes(now - GONE_KEPT_SECONDS)
    return [describe_node(n, now, heartbeat_interval) for n in found]


async def get_node(
    journal: Journal, node: str, now: float, heartbeat_interval: float
) -> dict[str, object]:
    found = await journal.get_node(node)
    if found is None:
        raise NodeNotFound(node)
    return describe_node(found, now, heartbeat_interval)


async def command_node(
    journal: Journal, node: str, command: str, now: float, heartbeat_interval: float
) -> dict[str, object]:
    """Record an operator's ``command`` for ``node`` (its target hears it at its next
    heartbeat, or at once through the notice of a shared journal). A gone node takes none."""
    found = await get_node(journal, node, now, heartbeat_interval)
    if found["status"] == "gone":
        raise InvalidTransition(f"node {node!r} is gone")
    paused, drain = COMMANDS[command]
    await journal.command_node(node, paused, drain)
    return await get_node(journal, node, now, heartbeat_interval)
