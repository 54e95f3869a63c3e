"""``actorq dead-letters list|retry|purge``: the dead tasks with their last error and
attempts; retry or purge a selection of them (``--id``, or ``--queue``/``--type``, or all) in
bounded chunks, on the database or through a running server (``--url``). Purging every dead
letter takes ``--all``, so a forgotten filter never empties the table."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from actorq.cli.base import OK, UsageError, on_target, subcommand, target_args
from actorq.cli.tasks import NODE, check_limit, first_page, page_args, page_json
from actorq.client import Client
from actorq.config import Config
from actorq.dead_letters import cli_actor, selection_from_json, settle
from actorq.journal.base import DeadAction, Journal, Op, Outcome, Selection
from actorq.model import Page, TaskFilter, TaskState


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--id", action="append", dest="ids", metavar="ID",
                   help="a dead task's id (repeat for more)")  # fmt: skip
    p.add_argument("--queue", help="only dead letters of this queue")
    p.add_argument("--type", help="only dead letters of this type")


def register(sub: Any) -> None:
    group = subcommand(sub, "dead-letters", "list, retry or purge dead letters")
    dsub = group.add_subparsers(dest="dead_cmd", required=True)
    text = "dead tasks with their last error and attempts, newest first"
    subcommand(dsub, "list", text, target_args, page_args).set_defaults(run=run)
    text = "queue dead letters again with a fresh attempt budget"
    subcommand(dsub, "retry", text, target_args, _selection_args).set_defaults(run=run)
    purge = subcommand(dsub, "purge", "remove dead letters (their history stays)", target_args,
                       _selection_args)  # fmt: skip
    purge.add_argument("--all", action="store_true", help="purge every dead letter")
    purge.set_defaults(run=run)


def _selection(args: argparse.Namespace) -> Selection:
    body = {"ids": args.ids, "queue": args.queue, "type": args.type}
    selection = selection_from_json({k: v for k, v in body.items() if v is not None})
    if args.dead_cmd == "purge" and selection == Selection() and not args.all:
        raise UsageError("purge needs --id, --queue or --type, or --all for every dead letter")
    return selection


def _list(args: argparse.Namespace, config: Config) -> int:
    check_limit(args.limit)

    async def on_http(client: Client) -> Page:
        pages = client.dead_letters(queue=args.queue, type=args.type, limit=args.limit,
                                    cursor=args.cursor)  # fmt: skip
        return await first_page(pages)

    async def on_db(journal: Journal) -> Page:
        query = TaskFilter(TaskState.DEAD, args.queue, args.type)
        return await journal.list_tasks(query, args.limit, args.cursor)

    page = on_target(args, config, http=on_http, db=on_db)
    print(json.dumps(page_json(page, "dead_letters"), indent=2))
    return OK


def run(args: argparse.Namespace, config: Config) -> int:
    if args.dead_cmd == "list":
        return _list(args, config)
    action = DeadAction.RETRY if args.dead_cmd == "retry" else DeadAction.PURGE
    selection = _selection(args)

    async def on_http(client: Client) -> int:
        call = (
            client.retry_dead_letters if action is DeadAction.RETRY else client.purge_dead_letters
        )
        return await call(selection.ids, queue=selection.queue, type=selection.type)

    async def on_db(journal: Journal) -> int:
        async def one(op: Op) -> Outcome:
            (outcome,) = await journal.run([op])
            return outcome

        return await settle(one, action, selection, clock=time.time, node=NODE, by=cli_actor())

    n = on_target(args, config, http=on_http, db=on_db)
    key = "retried" if action is DeadAction.RETRY else "purged"
    print(json.dumps({key: n}))
    return OK
