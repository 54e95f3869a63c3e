"""``actorq nodes list|pause|resume|drain``: the nodes of the cluster and an operator's orders
to one of them, on the database (``--database-url``) or through a running server (``--url``).

An order is recorded in the nodes table; the node obeys at its next heartbeat, or at once on
PostgreSQL (the order commits with a NOTIFY) and when the server asked is the node itself.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from actorq import nodes
from actorq.cli.base import OK, on_target, subcommand, target_args
from actorq.client import Client
from actorq.config import Config
from actorq.journal.base import Journal

COMMANDS = (
    ("pause", "the node takes no new work and gives back tasks it holds; running ones finish"),
    ("resume", "a paused node takes work again"),
    ("drain", "the node takes no new work; once its running tasks finish its process exits 0"),
)


def register(sub: Any) -> None:
    group = sub.add_parser(
        "nodes", help="list the nodes; pause, resume or drain one",
        description="The nodes of the cluster (live, and gone within the last hour) and an "
        "operator's orders to one, on the database or a server (--url).",
    )  # fmt: skip
    cmds = group.add_subparsers(dest="nodes_cmd", required=True, metavar="COMMAND")
    subcommand(cmds, "list", "every node, or the one named: what it serves and runs",
               target_args, _node_arg(optional=True)).set_defaults(run=run)  # fmt: skip
    for name, text in COMMANDS:
        subcommand(cmds, name, text, target_args, _node_arg()).set_defaults(run=run)


def _node_arg(*, optional: bool = False) -> Any:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "node_id",
            metavar="node",
            nargs="?" if optional else None,
            help="the node's id (its --node)",
        )

    return add


def run(args: argparse.Namespace, config: Config) -> int:
    cmd, node = args.nodes_cmd, args.node_id
    interval = config.heartbeat_interval

    async def http(client: Client) -> Any:
        if cmd == "list":
            return await client.node(node) if node else await client.nodes()
        return await client.command_node(node, cmd)

    async def db(journal: Journal) -> Any:
        now = time.time()
        if cmd == "list":
            if node:
                return await nodes.get_node(journal, node, now, interval)
            return await nodes.list_nodes(journal, now, interval)
        return await nodes.command_node(journal, node, cmd, now, interval)

    print(json.dumps(on_target(args, config, http=http, db=db), indent=2))
    return OK
