"""The journal's node records, on SQLite and on PostgreSQL: a node registers what it serves,
renews it with each heartbeat, is live while that heartbeat is recent, and is gone once
removed. Plus the count of queued tasks by (queue, type) that tells who waits for a handler."""

from __future__ import annotations

from actorq.journal.base import Claim, Journal, Submit
from actorq.model import NewTask
from actorq.nodes import Node, ServedType

T0 = 1_000.0


def node(
    name: str, at: float = T0, *types: ServedType, queues: tuple[str, ...] | None = None
) -> Node:
    return Node(name, "host-a", 4242, T0, at, {t.name: t for t in types}, queues)


JOB = ServedType("job", queue="jobs", priority=7, max_attempts=9, timeout=12.5)
ECHO = ServedType("echo")


async def test_a_registered_node_is_read_back_with_its_types_and_queues(journal: Journal) -> None:
    a = node("a", T0, JOB, ECHO, queues=("jobs", "default"))
    await journal.register_node(a)
    assert await journal.live_nodes(T0 - 1) == [a]


async def test_a_node_serving_every_queue_has_no_queue_list(journal: Journal) -> None:
    await journal.register_node(node("a", T0, ECHO))
    (found,) = await journal.live_nodes(T0)
    assert found.queues is None
    assert found.types == {"echo": ECHO}


async def test_registering_again_is_the_heartbeat_and_replaces_the_record(
    journal: Journal,
) -> None:
    await journal.register_node(node("a", T0, ECHO))
    await journal.register_node(node("a", T0 + 10, JOB))
    (found,) = await journal.live_nodes(T0 + 5)
    assert found.last_heartbeat == T0 + 10
    assert set(found.types) == {"job"}


async def test_only_nodes_with_a_heartbeat_within_the_horizon_are_live(journal: Journal) -> None:
    await journal.register_node(node("old", T0, ECHO))
    await journal.register_node(node("new", T0 + 30, JOB))
    assert [n.node for n in await journal.live_nodes(T0 + 1)] == ["new"]
    assert [n.node for n in await journal.live_nodes(T0)] == ["new", "old"]


async def test_a_removed_node_is_gone_and_removing_twice_is_harmless(journal: Journal) -> None:
    await journal.register_node(node("a", T0, ECHO))
    await journal.register_node(node("b", T0, JOB))
    await journal.remove_node("a")
    await journal.remove_node("a")
    await journal.remove_node("never-registered")
    assert [n.node for n in await journal.live_nodes(0)] == ["b"]


async def test_node_heartbeats_are_not_journal_events(journal: Journal) -> None:
    await journal.register_node(node("a", T0, ECHO))
    await journal.remove_node("a")
    assert (await journal.head()).journal_seq == 0


async def test_queued_tasks_are_counted_by_queue_and_type(journal: Journal) -> None:
    tasks = [
        NewTask("job", queue="jobs"),
        NewTask("job", queue="jobs"),
        NewTask("job", queue="other"),
        NewTask("echo"),
        NewTask("later", run_at=T0 + 3600),  # scheduled, not queued
    ]
    (outcome,) = await journal.run([Submit(tasks, T0, "n")])
    outcome.unwrap()
    (claimed,) = await journal.run([Claim(["n/w0"], T0, "n", 30.0, types=["echo"])])
    assert len(claimed.unwrap()) == 1
    assert await journal.queued_by_type() == {("jobs", "job"): 2, ("other", "job"): 1}
