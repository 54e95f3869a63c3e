"""``actorq journal`` commands of the audit trail: verify (chain and projection), head, seal,
archive; and the ``--archive DIR`` that replay, verify, export and rebuild accept."""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from actorq import audit
from actorq.actors.sealer import seal_all
from actorq.cli.base import FAILED, OK, UsageError
from actorq.config import Config
from actorq.errors import ActorqError, InvalidTransition
from actorq.journal.archive import Segments, archive
from actorq.journal.base import Journal
from actorq.journal.chain import parse_expect
from actorq.journal.seals import key_bytes
from actorq.submission import parse_time
from actorq.wire import iso

log = logging.getLogger("actorq.cli")

ARCHIVE_HELP = "a directory of archive segments (`actorq journal archive`): the archived history"


def add_args(name: str, p: argparse.ArgumentParser) -> None:
    """The flags of journal subcommand ``name`` that belong to the audit trail."""
    if name in ("replay", "verify", "export", "rebuild"):
        p.add_argument("--archive", metavar="DIR", help=ARCHIVE_HELP)
    if name == "verify":
        p.add_argument("--expect", metavar="SEQ:HASH",
                       help="fail unless the journal still leads to this seal (from `actorq "
                       "journal head`)")  # fmt: skip
    if name == "archive":
        p.add_argument("--before", required=True, help="ISO 8601 time: archive only rows older")
        p.add_argument("--to", required=True, metavar="DIR", help="where the segments go")


SUBCOMMANDS = (
    ("head", "print the latest seal (seq and hash), to keep elsewhere"),
    ("seal", "seal the journal up to its last committed row now"),
    ("archive", "move sealed ranges of tasks gone from the projection to segment files"),
)


def segments(args: argparse.Namespace) -> Segments | None:
    folder = getattr(args, "archive", None)
    return None if folder is None else Segments(folder)


async def verify(args: argparse.Namespace, config: Config, journal: Journal) -> int:
    expect = None
    if args.expect:
        try:
            expect = parse_expect(args.expect)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    found = segments(args)
    chain = await audit.verify_seals(journal, key_bytes(config.journal_key), expect, found)
    archived = await journal.archived_through()
    out: dict[str, Any]
    if archived and found is None:
        out = {"matches": None, "projection": "not compared: the journal is archived through "
               f"seq {archived}; give --archive DIR"}  # fmt: skip
        matches = True
    else:
        try:
            report = await audit.verify_projection(journal, found)
            out, matches = report.as_json(), report.matches
        # rows out of order, a history cut short, a row that is no event at all
        except (InvalidTransition, KeyError, ValueError, TypeError) as exc:
            out, matches = {"matches": False, "projection": f"the journal does not replay: "
                            f"{exc}"}, False  # fmt: skip
    ok = matches and chain.ok
    out = {"verified": ok, **out, "seals": chain.as_json()}
    text = json.dumps(out, indent=2)
    head = chain.head.last_seq if chain.head is not None else 0
    try:  # kept for the dashboard; a database that cannot take it is verified all the same
        await journal.record_verification(time.time(), ok, head, json.dumps(out))
    except ActorqError as exc:
        log.warning("could not record this verify's outcome: %s", exc)
    print(text)
    return OK if ok else FAILED


async def head(journal: Journal) -> int:
    seal = await journal.seal_head()
    if seal is None:
        print(json.dumps({"seq": 0, "hash": None, "expect": None}))
        return OK
    print(json.dumps({"seq": seal.last_seq, "hash": seal.hash,
                      "expect": f"{seal.last_seq}:{seal.hash}", "at": iso(seal.at)}))  # fmt: skip
    return OK


async def seal(config: Config, journal: Journal) -> int:
    written = await seal_all(journal, key_bytes(config.journal_key), config.node)
    top = await journal.seal_head()
    shown = None if top is None else {"seq": top.last_seq, "hash": top.hash}
    print(json.dumps({"seals_written": len(written), "head": shown}))
    return OK


async def move(args: argparse.Namespace, config: Config, journal: Journal) -> int:
    before = parse_time(args.before, "--before")
    done = await archive(journal, args.to, before, key_bytes(config.journal_key), time.time())
    print(json.dumps({"segments": done.segments, "seals": done.seals, "rows": done.rows,
                      "archived_through": done.through}))  # fmt: skip
    return OK
