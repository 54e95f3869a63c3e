"""``actorq tasks list|get|cancel|retry``: one task or a page of them, on the database or
through a running server (``--url``). A cancel or retry from here records who asked
(``cli:user@host``) in the task's history."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from actorq.cli.base import OK, on_target, subcommand, target_args
from actorq.client import Client
from actorq.config import Config
from actorq.dead_letters import cli_actor
from actorq.errors import ActorqError, InvalidTransition
from actorq.journal.base import Append, Journal
from actorq.model import Event, EventKind, Page, Task, TaskFilter, TaskState
from actorq.render import task_json

NODE = "cli"


def page_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", help="only tasks of this queue")
    p.add_argument("--type", help="only tasks of this type")
    p.add_argument("--limit", type=int, default=50, help="tasks per page (1-500, default 50)")
    p.add_argument("--cursor", help="next_cursor of the previous page")


def register(sub: Any) -> None:
    group = subcommand(sub, "tasks", "list, show, cancel or retry tasks")
    tsub = group.add_subparsers(dest="tasks_cmd", required=True)
    listing = subcommand(tsub, "list", "a page of tasks, newest first", target_args, page_args)
    listing.add_argument("--state", choices=[s.value for s in TaskState], help="only this state")
    listing.add_argument("--by", help="only tasks submitted by this actor (a token's name, "
                         "cli:USER@HOST, anonymous)")  # fmt: skip
    listing.set_defaults(run=run)
    for name, text in (
        ("get", "one task"),
        ("cancel", "cancel a queued, scheduled or running task"),
        ("retry", "queue a dead or cancelled task again, attempts reset"),
    ):
        p = subcommand(tsub, name, text, target_args)
        p.add_argument("id", help="the task id")
        p.set_defaults(run=run)


def page_json(page: Page, key: str = "tasks") -> dict[str, Any]:
    return {key: [task_json(t) for t in page.tasks], "next_cursor": page.next_cursor}


async def first_page(pages: AsyncIterator[Page]) -> Page:
    """The first page a client's paging iterator gives (the CLI shows one page at a time)."""
    async for page in pages:
        return page
    raise ActorqError("the server answered no page")


def check_limit(limit: int) -> None:
    from actorq.cli.base import UsageError

    if not 1 <= limit <= 500:
        raise UsageError("--limit must be between 1 and 500")


async def _get(journal: Journal, task_id: str) -> Task:
    return await journal.get(task_id)


async def _cancel(journal: Journal, task_id: str) -> Task:
    task = await journal.get(task_id)
    if task.state.finished:
        raise InvalidTransition(f"task {task_id} is already {task.state}")
    data = {"reason": "cancelled", "by": cli_actor()}
    (outcome,) = await journal.run([Append(Event(EventKind.CANCELLED, task_id, time.time(),
                                                 NODE, data))])  # fmt: skip
    cancelled: Task = outcome.unwrap()
    return cancelled


async def _retry(journal: Journal, task_id: str) -> Task:
    event = Event(EventKind.RETRIED, task_id, time.time(), NODE, {"by": cli_actor()})
    (outcome,) = await journal.run([Append(event)])
    task: Task = outcome.unwrap()
    return task


def run(args: argparse.Namespace, config: Config) -> int:
    cmd = args.tasks_cmd
    if cmd == "list":
        check_limit(args.limit)
        query = TaskFilter(
            TaskState(args.state) if args.state else None, args.queue, args.type, args.by
        )

        async def list_http(client: Client) -> Page:
            pages = client.list(state=query.state, queue=query.queue, type=query.type,
                                limit=args.limit, cursor=args.cursor, by=query.by)  # fmt: skip
            return await first_page(pages)

        async def list_db(journal: Journal) -> Page:
            return await journal.list_tasks(query, args.limit, args.cursor)

        page = on_target(args, config, http=list_http, db=list_db)
        print(json.dumps(page_json(page), indent=2))
        return OK
    task_id = args.id
    http = {"get": Client.get, "cancel": Client.cancel, "retry": Client.retry}[cmd]
    db = {"get": _get, "cancel": _cancel, "retry": _retry}[cmd]

    async def on_http(client: Client) -> Task:
        return await http(client, task_id)

    async def on_db(journal: Journal) -> Task:
        task: Task = await db(journal, task_id)
        return task

    print(json.dumps(task_json(on_target(args, config, http=on_http, db=on_db)), indent=2))
    return OK
