"""The ``actorq`` command line.

serve | worker | submit | migrate | journal {replay,verify,export,rebuild}. Every flag of a
node also reads from an ``ACTORQ_*`` environment variable (flags win).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import signal
import sys
import time
from typing import Any

from actorq import audit
from actorq.builtin import builtin_registry
from actorq.config import Config
from actorq.errors import ActorqError
from actorq.journal import journal_from_url
from actorq.journal.base import Journal
from actorq.tasks import Registry, parse_submission, parse_time

log = logging.getLogger("actorq.cli")


def load_app(spec: str) -> Any:
    """``module:attribute`` (default attribute ``app``) -> the App object."""
    module_name, _, attr = spec.partition(":")
    sys.path.insert(0, ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"actorq: cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr or "app")
    except AttributeError:
        raise SystemExit(f"actorq: {module_name!r} has no attribute {attr or 'app'!r}") from None


def _node_args(p: argparse.ArgumentParser, *, http: bool) -> None:
    p.add_argument("--database-url", help="sqlite:///FILE or postgresql://...")
    p.add_argument("--concurrency", type=int, help="workers in this node (default 10)")
    p.add_argument("--lease-seconds", type=float, help="lease of a running task (default 30)")
    p.add_argument("--shutdown-grace", type=float, help="seconds running tasks get on stop")
    p.add_argument("--queues", help="comma-separated queues to work on (default: all)")
    p.add_argument("--app", help="module:attribute of your actorq.App (ACTORQ_APP)")
    p.add_argument("--node", help="node name (default: host-pid-random)")
    if http:
        p.add_argument("--host", help="HTTP bind address (ACTORQ_HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="HTTP port (ACTORQ_PORT, default 8080)")


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    names = ("database_url", "concurrency", "lease_seconds", "shutdown_grace", "app", "node",
             "host", "port")  # fmt: skip
    flags = {n: getattr(args, n, None) for n in names}
    if getattr(args, "queues", None):
        flags["queues"] = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    return flags


def _setup(args: argparse.Namespace) -> tuple[Config, Registry]:
    flags = _flags(args)
    app_spec = flags.get("app") or Config.load().app
    if app_spec:
        app = load_app(app_spec)
        return Config.load(flags, base=app.settings), app.registry
    return Config.load(flags), builtin_registry()


async def _run_node(config: Config, registry: Registry, *, http: bool) -> int:
    from aiohttp import web

    from actorq.http.app import make_app
    from actorq.runtime import Runtime

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
            return 1
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
        return 1
    return 0


async def _with_journal(url: str, body: Any) -> Any:
    journal: Journal = journal_from_url(url)
    await journal.open()
    try:
        return await body(journal)
    finally:
        await journal.close()


def _cmd_journal(args: argparse.Namespace, config: Config) -> int:
    until = parse_time(args.until, "--until") if getattr(args, "until", None) else None

    async def body(journal: Journal) -> int:
        match args.journal_cmd:
            case "replay" | "verify" if until is None:
                report = await audit.verify_projection(journal)
                print(json.dumps(report.as_json(), indent=2))
                return 0 if report.matches else 1
            case "replay":
                tasks, count = await audit.replay(journal, until)
                if args.task:
                    from actorq.render import task_json

                    found = tasks.get(args.task)
                    print(json.dumps(task_json(found) if found else None, indent=2))
                    return 0 if found else 1
                states = audit.summarize(tasks.values())
                print(
                    json.dumps({"until": args.until, "events": count, "states": states}, indent=2)
                )
                return 0
            case "export":
                if args.output == "-":
                    n = await audit.export(journal, sys.stdout, until)
                else:
                    with open(args.output, "w") as f:  # noqa: ASYNC230 - a CLI writing its output
                        n = await audit.export(journal, f, until)
                print(f"exported {n} events", file=sys.stderr)
                return 0
            case "rebuild":
                n = await audit.rebuild(journal)
                print(json.dumps({"rebuilt_tasks": n}))
                return 0
        return 2

    result: int = asyncio.run(_with_journal(config.database_url, body))
    return result


def _cmd_submit(args: argparse.Namespace, config: Config, registry: Registry) -> int:
    from actorq.journal.base import Submit
    from actorq.render import task_json

    try:
        payload = json.loads(args.payload) if args.payload else None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"actorq: --payload is not valid JSON: {exc}") from exc
    item = {"type": args.type, "payload": payload, "priority": args.priority}
    if args.delay:
        item["delay"] = args.delay
    new = parse_submission(item, registry, time.time())

    async def body(journal: Journal) -> int:
        (outcome,) = await journal.run([Submit([new], time.time(), "cli")])
        print(json.dumps(task_json(outcome.unwrap()[0]), indent=2))
        return 0

    result: int = asyncio.run(_with_journal(config.database_url, body))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actorq", description=__doc__)
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (ACTORQ_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run a node with the HTTP API and dashboard")
    _node_args(serve, http=True)
    _node_args(sub.add_parser("worker", help="run a node without HTTP"), http=False)
    p = sub.add_parser("submit", help="submit one task")
    _node_args(p, http=False)
    p.add_argument("type")
    p.add_argument("--payload", help="JSON")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--delay", type=float)
    p = sub.add_parser("migrate", help="apply the schema to the database and exit")
    p.add_argument("--database-url")
    j = sub.add_parser("journal", help="replay, verify, export or rebuild from the journal")
    jsub = j.add_subparsers(dest="journal_cmd", required=True)
    for name, text in (
        ("replay", "replay into a fresh projection and compare, or show the state at --until"),
        ("verify", "replay and compare with the live projection (exit 1 on mismatch)"),
        ("export", "write the journal as JSON Lines"),
        ("rebuild", "replace the live projection with the replayed one"),
    ):
        jp = jsub.add_parser(name, help=text)
        jp.add_argument("--database-url")
        if name in ("replay", "export"):
            jp.add_argument("--until", help="ISO 8601 time: only events up to then")
        if name == "replay":
            jp.add_argument("--task", help="with --until: that task's state then")
        if name == "export":
            jp.add_argument("--output", "-o", default="-", help="file (default: stdout)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd in ("serve", "worker", "submit"):
            config, registry = _setup(args)
        else:
            config, registry = Config.load({"database_url": args.database_url}), Registry()
        logging.basicConfig(
            level=(args.log_level or config.log_level).upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        match args.cmd:
            case "serve" | "worker":
                return asyncio.run(_run_node(config, registry, http=args.cmd == "serve"))
            case "submit":
                return _cmd_submit(args, config, registry)
            case "migrate":
                asyncio.run(_with_journal(config.database_url, _noop))
                print("schema is up to date")
                return 0
            case "journal":
                return _cmd_journal(args, config)
    except ActorqError as exc:
        print(f"actorq: {exc}", file=sys.stderr)
        return 2
    return 2


async def _noop(_: Journal) -> None:
    return None


if __name__ == "__main__":
    sys.exit(main())
