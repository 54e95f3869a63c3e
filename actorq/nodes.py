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

from actorq.errors import UnknownTaskType
from actorq.model import TypeDefaults
from actorq.retry import RetryPolicy

if TYPE_CHECKING:
    from actorq.journal.base import Journal

LIVENESS_INTERVALS = 3
"""A node is live while its last heartbeat is at most this many heartbeat intervals old."""


def liveness_horizon(now: float, heartbeat_interval: float) -> float:
    """The oldest last heartbeat of a node still counted as live at ``now``."""
    return now - LIVENESS_INTERVALS * heartbeat_interval


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
