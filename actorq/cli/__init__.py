"""The ``actorq`` command line.

serve | worker | submit | migrate | journal {replay,verify,export,rebuild,...}. Every flag of a
node also reads from an ``ACTORQ_*`` environment variable and from a configuration file
(``--config FILE``, ``ACTORQ_CONFIG`` or ``./actorq.toml``); flags win, then variables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from actorq import audit, logs
from actorq.builtin import builtin_registry
from actorq.cli import dead_letters, nodes, queues, schedules, seals, stats, tasks, tokens
from actorq.cli.base import (
    CONFIG_HELP,
    DESCRIPTION,
    EXIT_CODES,
    FAILED,
    INTERRUPTED,
    LOG_FORMAT_HELP,
    MEMORY,
    OK,
    PIPE_CLOSED,
    UNAVAILABLE,
    USAGE,
    UsageError,
    database_args,
    subcommand,
    with_journal,
)
from actorq.config import Config
from actorq.errors import ActorqError, InvalidInput, StorageError, UnknownTaskType
from actorq.journal import backend_of, is_memory_url, journal_from_url, probe, redact_url
from actorq.journal.base import Journal
from actorq.loader import load_app
from actorq.loop import run as run_on_loop
from actorq.retry import PolicyError, RetryDefaults, parse_spec, policy_json
from actorq.submission import parse_time
from actorq.tasks import Registry, parse_submission

log = logging.getLogger("actorq.cli")

# The operator's command groups: each module's ``register(sub)`` adds its subcommands and
# sets ``run(args, config) -> exit code`` as their default.
GROUPS = (stats, queues, schedules, tasks, dead_letters, nodes, tokens)


def _app_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--app", help="module:attr or path/file.py:attr of your actorq.App (ACTORQ_APP)")


def _node_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=int, help="workers in this node (default 10)")
    p.add_argument("--lease-seconds", type=float, help="lease of a running task (default 30)")
    p.add_argument("--shutdown-grace", type=float, help="seconds running tasks get on stop")
    p.add_argument(
        "--queues",
        metavar="SPEC",
        help="the queues to work on, in order (ACTORQ_QUEUES; default: all, by priority): "
        "comma-separated NAME or NAME:WEIGHT. A NAME alone is served before every queue after "
        "it; consecutive NAME:WEIGHT entries share each claim in proportion to their weights "
        "(1-1000). e.g. critical,default:3,low:1: critical first, then default and low 3 to 1",
    )
    p.add_argument("--node", help="node name (default: host-pid-random)")
    p.add_argument("--retention", help="finished tasks leave the tasks table this long after "
                   "they finish: seconds or 30m, 12h, 7d (ACTORQ_RETENTION, default 7d; 0: "
                   "keep)")  # fmt: skip
    p.add_argument(
        "--retry",
        dest="default_retry",
        metavar="POLICY",
        help=f"default retry policy of tasks that set none (ACTORQ_RETRY): {_POLICY}",
    )


_POLICY = (
    "BACKOFF[,base=S][,factor=F][,cap=S][,jitter=J] or JSON; BACKOFF: exponential|linear|fixed"
)


def _submit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("type", help="the task type")
    p.add_argument("--payload", help="JSON (default: null)")
    p.add_argument("--priority", type=int, help="higher runs first (default: the type's)")
    p.add_argument("--queue", help="default: the type's")
    p.add_argument("--max-attempts", type=int, help="default: the type's")
    p.add_argument("--timeout", type=float, help="seconds a run may take (default: the type's)")
    p.add_argument("--delay", type=float, help="seconds to wait before it may run")
    p.add_argument("--idempotency-key", help="refused while a live task holds the same key")
    p.add_argument(
        "--retry",
        metavar="POLICY",
        help=f"its retry policy (default: the queue's, type's or node's): {_POLICY}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actorq", description=DESCRIPTION, epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (ACTORQ_LOG_LEVEL)")
    parser.add_argument("--log-format", choices=logs.FORMATS, help=LOG_FORMAT_HELP)
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="cmd", required=True)
    node = (database_args, _app_args, _node_args)

    def http(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="HTTP bind address (ACTORQ_HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="HTTP port (ACTORQ_PORT, default 8080)")
        p.add_argument("--rate-limit", help="requests per API token (or per client address, "
                       "without one), e.g. 200/s or 1000/m (ACTORQ_RATE_LIMIT, default: no "
                       "limit)")  # fmt: skip
        p.add_argument("--no-auth", action="store_const", const="off", dest="auth",
                       help="check no API token, even on a public address (ACTORQ_AUTH=off; "
                       "default: tokens are checked once one exists)")  # fmt: skip
        p.add_argument("--no-example-types", action="store_const", const="0",
                       dest="example_types", help="without --app, load no example task "
                       "types (ACTORQ_EXAMPLE_TYPES=0)")  # fmt: skip

    subcommand(sub, "serve", "run a node with the HTTP API and dashboard", *node, http)
    subcommand(sub, "worker", "run a node without HTTP", *node)
    subcommand(sub, "submit", "submit one task", database_args, _app_args, _submit_args)
    subcommand(sub, "migrate", "apply the schema to the database and exit", database_args)
    for group in GROUPS:
        group.register(sub)
    j = subcommand(sub, "journal", "replay, verify, export or rebuild from the journal")
    jsub = j.add_subparsers(dest="journal_cmd", required=True)
    for name, text in (
        ("replay", "replay into a fresh projection and compare, or show the state at --until"),
        (
            "verify",
            "check the seals and compare a replay with the live projection (exit 1 "
            "on an altered, missing, inserted or reordered row, or a mismatch)",
        ),
        ("export", "write the journal as JSON Lines"),
        ("rebuild", "replace the live projection with the replayed one"),
        *seals.SUBCOMMANDS,
    ):
        jp = subcommand(jsub, name, text, database_args)
        seals.add_args(name, jp)
        if name in ("replay", "export"):
            jp.add_argument("--until", help="ISO 8601 time: only events up to then")
        if name == "replay":
            jp.add_argument("--task", help="with --until: that task's state then")
        if name == "export":
            jp.add_argument("--output", "-o", default="-", help="file (default: stdout)")
            jp.add_argument("--by", help="only the events of this actor (a token's name, "
                            "cli:USER@HOST, a node id, anonymous)")  # fmt: skip
    return parser


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    names = ("database_url", "concurrency", "lease_seconds", "shutdown_grace", "app", "node",
             "host", "port", "retention", "rate_limit", "auth", "example_types")  # fmt: skip
    flags = {n: getattr(args, n, None) for n in names}
    flags["retry"] = getattr(args, "default_retry", None)
    if getattr(args, "queues", None):
        flags["queues"] = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    return flags


def _setup(args: argparse.Namespace) -> tuple[Config, Registry]:
    flags = _flags(args)
    file = args.config
    if args.cmd not in ("serve", "worker", "submit"):
        return Config.load(flags, file=file), Registry()
    app_spec = flags.get("app") or Config.load(file=file).app
    if app_spec:
        app = load_app(app_spec)
        return Config.load(flags, base=app.settings, file=file), app.registry
    config = Config.load(flags, file=file)
    if not config.with_example_types:
        return config, Registry()
    return config, builtin_registry(config.webhook_allow)


# -- commands -------------------------------------------------------------------------------


async def _run_node(config: Config, registry: Registry, *, http: bool) -> int:
    from aiohttp import web

    from actorq.http.app import make_app
    from actorq.runtime import Runtime

    await probe(config.database_url, config.connect_timeout)
    if http and not await _auth_fits(config):
        return USAGE
    runtime = Runtime(config, registry)
    await runtime.start()
    runner = None
    if http:
        runner = web.AppRunner(make_app(runtime), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, config.port).start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", config.host, config.port, exc.strerror)
            await runner.cleanup()
            await runtime.stop()
            return FAILED
        log.info("API on http://%s:%d (dashboard at /)", config.host, config.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.ensure_future(runtime.wait())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping: no new work; running tasks get %.0fs", config.shutdown_grace)
    if runner is not None:
        await runner.cleanup()
    failed = runtime.system.failed
    await runtime.stop()
    for task in (waiter, stopper):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if failed is not None:
        log.error("node stopped after an unrecoverable failure: %r", failed)
        return FAILED
    return OK


async def _auth_fits(config: Config) -> bool:
    """Whether the node may serve with the auth it has: an address beyond this machine
    (not loopback) is refused while no token exists, unless auth is explicitly off. Asked
    before the node starts, so a refused node never claims anything."""
    if config.auth == "off":
        log.warning("auth is off (--no-auth): anyone who reaches %s:%d may submit, cancel and "
                    "change anything", config.host, config.port)  # fmt: skip
        return True
    if config.auth == "required" or is_loopback(config.host):
        return True
    journal = journal_from_url(config.database_url)
    await journal.open()
    try:
        if await journal.tokens():
            return True
    finally:
        await journal.close()
    log.error(
        "refusing to serve on %s without authentication: no API token exists. Create one "
        "first (`actorq token create NAME --scope admin` on the same database), or set "
        "ACTORQ_AUTH=required, or pass --no-auth to serve without tokens on purpose",
        config.host,
    )
    return False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _cmd_journal(args: argparse.Namespace, config: Config) -> int:
    until = parse_time(args.until, "--until") if getattr(args, "until", None) else None

    async def body(journal: Journal) -> int:
        archive = seals.segments(args)
        match args.journal_cmd:
            case "verify":
                return await seals.verify(args, config, journal)
            case "head":
                return await seals.head(journal)
            case "seal":
                return await seals.seal(config, journal)
            case "archive":
                return await seals.move(args, config, journal)
            case "replay" if until is None:
                report = await audit.verify_projection(journal, archive)
                print(json.dumps(report.as_json(), indent=2))
                return OK if report.matches else FAILED
            case "replay":
                tasks, count = await audit.replay(journal, until, archive)
                if args.task:
                    from actorq.render import task_json

                    found = tasks.get(args.task)
                    print(json.dumps(task_json(found) if found else None, indent=2))
                    return OK if found else FAILED
                from actorq.wire import schedule_json

                states = audit.summarize(tasks.values())
                settings = await audit.replay_queues(journal, until, archive)
                schedules = await audit.replay_schedules(journal, until, archive)
                summary = {"until": args.until, "events": count, "states": states}
                print(json.dumps({**summary, "queues": [q.as_json() for q in settings.values()],
                                  "schedules": [schedule_json(s) for _, s in
                                                sorted(schedules.items())]},
                                 indent=2))  # fmt: skip
                return OK
            case "export":
                if args.output == "-":
                    n = await audit.export(journal, sys.stdout, until, args.by, archive)
                    sys.stdout.flush()  # a closed pipe shows here, before the count is told
                else:
                    with open(args.output, "w") as f:  # noqa: ASYNC230 - a CLI writing its output
                        n = await audit.export(journal, f, until, args.by, archive)
                print(f"exported {n} events", file=sys.stderr)
                return OK
            case "rebuild":
                n = await audit.rebuild(journal, archive)
                kept = len(await journal.schedules())
                print(json.dumps({"rebuilt_tasks": n, "rebuilt_schedules": kept}))
                return OK
        return USAGE

    return with_journal(config, body)


def _cmd_submit(args: argparse.Namespace, config: Config, registry: Registry) -> int:
    from actorq.journal.base import Submit
    from actorq.nodes import catalog_from_journal
    from actorq.queues import queue_policies
    from actorq.render import task_json

    try:
        payload = json.loads(args.payload) if args.payload is not None else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload is not valid JSON: {exc}") from None
    item: dict[str, Any] = {"type": args.type, "payload": payload}
    # Only what was given: the rest comes from the task type's own defaults.
    for name in ("priority", "queue", "max_attempts", "timeout", "delay", "idempotency_key"):
        if getattr(args, name) is not None:
            item[name] = getattr(args, name)
    if args.retry is not None:
        try:
            item["retry"] = policy_json(parse_spec(args.retry))
        except PolicyError as exc:
            raise UsageError(f"--retry {args.retry!r}: {exc}") from None

    async def body(journal: Journal) -> int:
        # A type this command does not load may be served by a live node: take its defaults.
        now = time.time()
        catalog = await catalog_from_journal(
            journal, registry, [args.type], config.heartbeat_interval, now
        )
        settings = await journal.queue_settings()
        try:
            retry = RetryDefaults(node=config.retry_policy, queues=queue_policies(settings))
            new = parse_submission(item, catalog, now, retry)
        except UnknownTaskType as exc:
            hint = "" if args.app or config.app else " (load yours with --app module:app)"
            raise UsageError(f"{exc}{hint}") from None
        (outcome,) = await journal.run([Submit([new], time.time(), "cli")])
        print(json.dumps(task_json(outcome.unwrap()[0]), indent=2))
        return OK

    return with_journal(config, body)


def _cmd_migrate(config: Config) -> int:
    async def body(_: Journal) -> None:
        return None

    with_journal(config, body)
    print("schema is up to date")
    return OK


def _dispatch(args: argparse.Namespace) -> int:
    config, registry = _setup(args)
    args.resolved_database_url = config.database_url  # _fail masks its password too
    level = (args.log_level or config.log_level).upper()
    if not isinstance(logging.getLevelName(level), int):
        raise UsageError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    fmt = getattr(args, "log_format", None) or config.log_format
    if fmt is not None and fmt not in logs.FORMATS:
        raise UsageError(f"unknown log format {fmt!r}: use json or text")
    logs.setup(level, fmt)
    backend_of(config.database_url)  # a malformed URL is a usage error, whatever the command
    if is_memory_url(config.database_url):
        if args.cmd != "serve":
            cmd = " ".join(filter(None, (args.cmd, getattr(args, "journal_cmd", None))))
            raise UsageError(MEMORY.format(url=config.database_url, cmd=cmd))
        log.warning("the database is in memory: this one process only, nothing is durable, "
                    "every task is gone when it stops")  # fmt: skip
    match args.cmd:
        case "serve" | "worker":
            return run_on_loop(_run_node(config, registry, http=args.cmd == "serve"),
                            config.event_loop)  # fmt: skip
        case "submit":
            return _cmd_submit(args, config, registry)
        case "migrate":
            return _cmd_migrate(config)
        case "journal":
            return _cmd_journal(args, config)
        case _ if hasattr(args, "run"):  # a command of GROUPS
            run: Callable[[argparse.Namespace, Config], int] = args.run
            return run(args, config)
    return USAGE


def _fail(code: int, message: str, args: argparse.Namespace) -> int:
    """Say why in one line on stderr (never a password) and return the exit code."""
    # The last: the URL the node resolved, which may come from a configuration file.
    urls = (getattr(args, "database_url", None), os.environ.get("ACTORQ_DATABASE_URL"),
            getattr(args, "resolved_database_url", None))  # fmt: skip
    for url in filter(None, urls):
        message = message.replace(url, redact_url(url))
    print(f"actorq: {' '.join(message.split())}", file=sys.stderr)
    return code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader is gone, and the flush at exit must not fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BrokenPipeError:
        _quiet_stdout()
        return PIPE_CLOSED
    except KeyboardInterrupt:
        return INTERRUPTED
    except (InvalidInput, UnknownTaskType) as exc:
        return _fail(USAGE, str(exc), args)
    except StorageError as exc:
        return _fail(UNAVAILABLE, str(exc), args)
    except ActorqError as exc:
        return _fail(FAILED, str(exc), args)


if __name__ == "__main__":
    sys.exit(main())
