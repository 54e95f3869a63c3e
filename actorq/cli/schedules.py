"""``actorq schedules list|add|pause|resume|delete``: recurring tasks, on the database or
through a running server (``--url``). Each prints the schedule(s) as the API shows them."""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from actorq.cli.base import OK, UsageError, on_target, subcommand, target_args
from actorq.client import Client
from actorq.config import Config
from actorq.errors import UnknownTaskType
from actorq.journal.base import Journal
from actorq.model import Schedule
from actorq.nodes import catalog_from_journal
from actorq.schedules import Schedules, parse_schedule, write_on
from actorq.tasks import Registry
from actorq.wire import schedule_json


def register(sub: Any) -> None:
    group = subcommand(sub, "schedules", "list, add, pause, resume or delete recurring tasks")
    cmds = group.add_subparsers(dest="schedules_cmd", required=True)
    subcommand(cmds, "list", "every schedule with its next and last run", target_args)
    subcommand(cmds, "add", "create a schedule", target_args, _add_args)
    for name, text in (
        ("pause", "pause a schedule: it fires nothing until resumed"),
        ("resume", "resume a schedule from its next future tick"),
        ("delete", "delete a schedule (its history stays in the journal)"),
    ):
        subcommand(cmds, name, text, target_args, _name_arg)
    group.set_defaults(run=run)


def _name_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the schedule's name")


def _add_args(p: argparse.ArgumentParser) -> None:
    _name_arg(p)
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="five fields, e.g. '*/5 * * * *' (or @hourly, @daily...)")
    when.add_argument("--every", type=float, help="seconds between ticks (at least 1)")
    p.add_argument("--type", required=True, help="the task type each tick enqueues")
    p.add_argument("--payload", help="the tasks' payload, as JSON")
    p.add_argument("--queue", help="default: the task type's")
    p.add_argument("--priority", type=int, help="default: the task type's")
    p.add_argument("--max-attempts", type=int, help="default: the task type's")
    p.add_argument("--timeout", type=float, help="seconds; default: the task type's")
    p.add_argument("--timezone", default="UTC", help="IANA name the cron is read in (UTC)")
    p.add_argument("--misfire", choices=("skip", "run_once"), default="skip",
                   help="after downtime: skip the missed ticks, or run once for them")  # fmt: skip
    p.add_argument("--paused", action="store_true", help="create it paused")


def _definition(args: argparse.Namespace) -> dict[str, Any]:
    try:
        payload = json.loads(args.payload) if args.payload is not None else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload is not valid JSON: {exc}") from None
    task: dict[str, Any] = {"type": args.type, "payload": payload}
    for name in ("queue", "priority", "max_attempts", "timeout"):
        if getattr(args, name) is not None:
            task[name] = getattr(args, name)
    body: dict[str, Any] = {"name": args.name, "task": task, "timezone": args.timezone,
                            "misfire": args.misfire, "paused": args.paused}  # fmt: skip
    if args.cron is not None:
        body["cron"] = args.cron
    else:
        body["every"] = args.every
    return body


def _actor() -> str:
    """Who a command line's events name: ``cli:user@host``."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


async def _on_database(journal: Journal, config: Config, args: argparse.Namespace) -> Any:
    schedules = Schedules(journal, lambda op: write_on(journal, op), _actor(), time.time)
    match args.schedules_cmd:
        case "list":
            return await schedules.list()
        case "add":
            body = _definition(args)
            now = time.time()
            catalog = await catalog_from_journal(
                journal, Registry(), [args.type], config.heartbeat_interval, now
            )
            try:
                definition = parse_schedule(body, catalog, now)
            except UnknownTaskType as exc:
                hint = "no live node serves it (start one, or use --url)"
                raise UsageError(f"{exc}: {hint}") from None
            return await schedules.create(definition)
        case "pause" | "resume":
            return await schedules.set_paused(args.name, args.schedules_cmd == "pause")
        case _:
            return await schedules.delete(args.name)


async def _on_server(client: Client, args: argparse.Namespace) -> Any:
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "list": client.schedules,
        "add": lambda: client.create_schedule(_definition(args)),
        "pause": lambda: client.pause_schedule(args.name),
        "resume": lambda: client.resume_schedule(args.name),
        "delete": lambda: client.delete_schedule(args.name),
    }
    return await calls[args.schedules_cmd]()


def run(args: argparse.Namespace, config: Config) -> int:
    found = on_target(
        args,
        config,
        http=lambda client: _on_server(client, args),
        db=lambda journal: _on_database(journal, config, args),
    )
    if isinstance(found, Schedule):
        print(json.dumps(schedule_json(found), indent=2))
    else:
        print(json.dumps({"schedules": [schedule_json(s) for s in found]}, indent=2))
    return OK
