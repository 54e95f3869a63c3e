"""``actorq queues list|pause|resume|purge|set``: an operator's queue controls, on the
database (``--database-url``) or through a running server (``--url``)."""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import time
from typing import Any

from actorq.cli.base import OK, on_target, subcommand, target_args
from actorq.client import Client
from actorq.config import Config
from actorq.errors import InvalidInput, QueueNotFound
from actorq.journal.base import ConfigureQueue, Journal, PurgeQueue
from actorq.model import TaskState
from actorq.queues import (
    DEFAULT_PURGE,
    check_name,
    describe,
    parse_patch,
    parse_purge,
    parse_rate,
)
from actorq.retry import PolicyError, parse_spec, policy_json

NONE = "none"


def register(sub: Any) -> None:
    group = sub.add_parser(
        "queues", help="list, pause, resume, purge queues and set their limits",
        description="An operator's queue controls, on the database or a server (--url).",
    )  # fmt: skip
    cmds = group.add_subparsers(dest="queues_cmd", required=True, metavar="COMMAND")
    subcommand(cmds, "list", "every queue: settings, tasks by state, oldest queued age",
               target_args, _name_arg(optional=True)).set_defaults(run=run)  # fmt: skip
    for name, text in (("pause", "no new task of the queue starts on any node"),
                       ("resume", "the queue's tasks start again")):  # fmt: skip
        subcommand(cmds, name, text, target_args, _name_arg()).set_defaults(run=run)
    purge = subcommand(cmds, "purge", "cancel the queue's tasks (default: queued, scheduled)",
                       target_args, _name_arg())  # fmt: skip
    purge.add_argument("--states", help="comma-separated: queued, scheduled, claimed, running")
    purge.set_defaults(run=run)
    subcommand(cmds, "set", "change the queue's limits (`none` clears one)", target_args,
               _name_arg(), _limit_args).set_defaults(run=run)  # fmt: skip


def _name_arg(*, optional: bool = False) -> Any:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("name", nargs="?" if optional else None, help="the queue")

    return add


def _limit_args(p: argparse.ArgumentParser) -> None:
    for flag, metavar, text in (
        ("concurrency", "N", "tasks held (claimed or running) at once across the cluster, or none"),
        ("rate-limit", "N/SECONDS", "tasks started per SECONDS across the cluster (e.g. 10/1), "
         "or none"),
        ("max-depth", "N", "queued + scheduled tasks it accepts (more: 503 queue_full), or none"),
        ("retention", "SECONDS", "how long its finished tasks stay in the projection, or none "
         "for the node's default"),
        ("retry", "POLICY", "retry policy of its tasks that set none, e.g. fixed,base=5 or "
         "exponential,base=1,factor=2,cap=300; none for their type's or the node's"),
    ):  # fmt: skip
        dest = "set_" + flag.replace("-", "_")  # apart from a node's own --concurrency
        p.add_argument(f"--{flag}", dest=dest, metavar=metavar, help=text)


def _number(flag: str, raw: str, kind: type[int] | type[float]) -> Any:
    if raw.strip().lower() == NONE:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise InvalidInput(f"{flag} must be a number or none, got {raw!r}") from None


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``set`` changes, checked as the API checks a PATCH."""
    body: dict[str, Any] = {}
    if args.set_concurrency is not None:
        body["concurrency"] = _number("--concurrency", args.set_concurrency, int)
    if args.set_rate_limit is not None:
        rate = parse_rate(args.set_rate_limit)
        body["rate_limit"] = None if rate is None else rate.as_json()
    if args.set_max_depth is not None:
        body["max_depth"] = _number("--max-depth", args.set_max_depth, int)
    if args.set_retention is not None:
        body["retention"] = _number("--retention", args.set_retention, float)
    if args.set_retry is not None:
        body["retry"] = _policy(args.set_retry)
    if not body:
        raise InvalidInput("give at least one of --concurrency, --rate-limit, --max-depth, "
                           "--retention, --retry")  # fmt: skip
    return parse_patch(body)


def _policy(raw: str) -> dict[str, Any] | None:
    if raw.strip().lower() == NONE:
        return None
    try:
        return policy_json(parse_spec(raw))
    except PolicyError as exc:
        raise InvalidInput(f"--retry {raw!r}: {exc}") from None


def _actor() -> str:
    """Who the journal says made the change."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.queues_cmd == "set":
        return _changes(args)
    if args.queues_cmd in ("pause", "resume"):
        return {"paused": args.queues_cmd == "pause"}
    return {}


def _states(args: argparse.Namespace) -> tuple[TaskState, ...]:
    if args.queues_cmd != "purge" or not args.states:
        return DEFAULT_PURGE
    return parse_purge({"states": [s.strip() for s in args.states.split(",")]})


def run(args: argparse.Namespace, config: Config) -> int:
    cmd = args.queues_cmd
    name = None if args.name is None else check_name(args.name)
    changes, states = _settings(args), _states(args)

    async def http(client: Client) -> Any:
        if cmd == "list":
            return await client.queue(name) if name else await client.queues()
        assert name is not None
        if cmd == "purge":
            return {"purged": await client.purge_queue(name, [s.value for s in states])}
        return await client.configure_queue(name, **changes)

    async def db(journal: Journal) -> Any:
        if cmd == "list":
            found = await describe(journal, time.time(), name)
            if name is not None and not found:
                raise QueueNotFound(name)
            return found[0] if name else found
        assert name is not None
        if cmd == "purge":
            total = 0
            while True:
                op = PurgeQueue(name, states, time.time(), _actor(), f"queue {name!r} purged")
                (outcome,) = await journal.run([op])
                total += len(outcome.unwrap())
                if len(outcome.value) < op.limit:
                    return {"purged": total}
        (outcome,) = await journal.run([ConfigureQueue(name, changes, time.time(), _actor())])
        outcome.unwrap()
        return (await describe(journal, time.time(), name))[0]

    print(json.dumps(on_target(args, config, http=http, db=db), indent=2))
    return OK
