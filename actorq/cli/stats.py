"""``actorq stats``: tasks by state and queue, from a running server or the database."""

from __future__ import annotations

import argparse
import json
from typing import Any

from actorq.cli.base import OK, on_target, subcommand, target_args
from actorq.client import Client
from actorq.config import Config
from actorq.journal.base import Journal
from actorq.model import TaskState


def register(sub: Any) -> None:
    text = "tasks by state and queue (a server adds rates and pickup latency)"
    subcommand(sub, "stats", text, target_args).set_defaults(run=run)


async def _from_server(client: Client) -> dict[str, Any]:
    return await client.stats()


async def _from_database(journal: Journal) -> dict[str, Any]:
    """The counts ``/api/v1/stats`` shows, read from the projection: the rates and latencies
    live in a node's memory and need ``--url``."""
    by_state = {s.value: 0 for s in TaskState}
    queues: dict[str, dict[str, int]] = {}
    for (queue, state), n in sorted((await journal.counts()).items()):
        by_state[state.value] += n
        queues.setdefault(queue, {s.value: 0 for s in TaskState})[state.value] = n
    return {"scope": "database", "tasks": by_state, "queues": queues}


def run(args: argparse.Namespace, config: Config) -> int:
    stats = on_target(args, config, http=_from_server, db=_from_database)
    print(json.dumps(stats, indent=2))
    return OK
