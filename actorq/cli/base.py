"""What every ``actorq`` subcommand shares: exit codes, common flags, and the two ways an
operator's command reaches the queue: the database itself (``--database-url``) or a running
server (``--url``, through ``actorq.client``)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from actorq.auth import ACTOR
from actorq.client import Client
from actorq.config import Config
from actorq.dead_letters import cli_actor
from actorq.errors import InvalidInput
from actorq.journal import journal_from_url, probe
from actorq.journal.base import Journal

T = TypeVar("T")

OK, FAILED, USAGE, UNAVAILABLE = 0, 1, 2, 3
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process Ctrl-C ended
PIPE_CLOSED = 141  # 128 + SIGPIPE: what `head` leaves a writer that a shell would report

EXIT_CODES = f"""\
exit codes:
  {OK}    success
  {FAILED}    the operation failed: journal verify/replay found a mismatch (verify: or an
       altered, missing, inserted or reordered row, a broken chain of seals), replay --task
       found no such task, a node could not listen or stopped after a failure,
       a submission was refused (e.g. its idempotency key is taken), a schedule named
       does not exist or its name is taken
  {USAGE}    usage or configuration error: bad flags, malformed or unsupported
       --database-url, invalid --payload, unknown task type, :memory: where it cannot work
  {UNAVAILABLE}    the database cannot be reached or opened: PostgreSQL down, refusing or
       too slow to answer (ACTORQ_CONNECT_TIMEOUT), SQLite file in a missing or
       read-only directory
  {INTERRUPTED}  interrupted (Ctrl-C)
  {PIPE_CLOSED}  the reader of the output went away (e.g. `actorq journal export | head`)
"""

DESCRIPTION = """\
actorq: a durable task queue. Every flag of a node also reads from an ACTORQ_* environment
variable and from a TOML file (--config FILE, ACTORQ_CONFIG or ./actorq.toml); flags win,
then variables, then the file. `actorq COMMAND --help` shows a command's flags."""

CONFIG_HELP = (
    "TOML file of settings, below flags and ACTORQ_* variables "
    "(ACTORQ_CONFIG, default ./actorq.toml if there is one)"
)

LOG_FORMAT_HELP = (
    "json (one object a line) or text (ACTORQ_LOG_FORMAT; default json when stdout is not a "
    "terminal); logs go to stderr"
)

MEMORY = (
    "{url} is an in-memory database that lives and dies with one process: only `actorq serve` "
    "can use it (`actorq {cmd}` would start from an empty one that nobody else sees); "
    "use a file instead, e.g. sqlite:///actorq.db"
)


class UsageError(InvalidInput):
    """A command line that cannot work as given (exit 2)."""


# -- flags ----------------------------------------------------------------------------------


def common_args(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's --log-level is set only when given there, so one given before
    # the subcommand (`actorq --log-level DEBUG serve`) is not reset to None by its default.
    p.add_argument("--log-level", default=argparse.SUPPRESS,
                   help="DEBUG, INFO, WARNING, ERROR (ACTORQ_LOG_LEVEL, default INFO)")  # fmt: skip
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)
    p.add_argument("--log-format", choices=("json", "text"), default=argparse.SUPPRESS,
                   help=LOG_FORMAT_HELP)  # fmt: skip


def database_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        help="sqlite:///FILE or postgresql://USER@HOST:PORT/DB "
        "(ACTORQ_DATABASE_URL, default sqlite:///actorq.db)",
    )


def with_journal(config: Config, body: Callable[[Journal], Awaitable[T]]) -> T:
    async def run() -> T:
        ACTOR.set(cli_actor())  # what the command writes names who ran it
        await probe(config.database_url, config.connect_timeout)
        journal = journal_from_url(config.database_url)
        await journal.open()
        try:
            return await body(journal)
        finally:
            await journal.close()

    return asyncio.run(run())


def subcommand(
    sub: Any, name: str, text: str, *adders: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
    for add in (*adders, common_args):
        add(p)
    return p


def target_args(p: argparse.ArgumentParser) -> None:
    """An operator's command runs on the database, or on a running server given ``--url``."""
    database_args(p)
    p.add_argument("--url", help="a running actorq server, e.g. http://127.0.0.1:8080 "
                   "(ACTORQ_URL); without it the command works on the database")  # fmt: skip
    p.add_argument("--token", help="with --url: the API token to send (ACTORQ_TOKEN)")


def server_url(args: argparse.Namespace) -> str | None:
    import os

    return getattr(args, "url", None) or os.environ.get("ACTORQ_URL") or None


def on_target(
    args: argparse.Namespace,
    config: Config,
    *,
    http: Callable[[Client], Awaitable[T]],
    db: Callable[[Journal], Awaitable[T]],
) -> T:
    """Run an operator's command through a server's API if ``--url`` names one, else on the
    database."""
    url = server_url(args)
    if url is None:
        return with_journal(config, db)

    import os

    token = getattr(args, "token", None) or os.environ.get("ACTORQ_TOKEN") or None

    async def run() -> T:
        async with Client(url, token) as client:
            return await http(client)

    return asyncio.run(run())
