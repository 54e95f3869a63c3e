"""``actorq token create|list|revoke``: API tokens, on the database (``--database-url``) or,
with an admin token, through a running server (``--url``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from actorq.auth import ACTOR, Scope, new_token, parse_scope
from actorq.cli.base import OK, on_target, subcommand, target_args
from actorq.client import Client
from actorq.config import Config
from actorq.journal.base import Journal


def register(sub: Any) -> None:
    group = sub.add_parser(
        "token", help="create, list and revoke API tokens",
        description="API tokens: on the database, or a server (--url) with an admin token.",
    )  # fmt: skip
    cmds = group.add_subparsers(dest="token_cmd", required=True, metavar="COMMAND")
    create = subcommand(cmds, "create", "a new token; its secret is printed once, here",
                        target_args)  # fmt: skip
    create.add_argument("name", help="1-100 letters, digits, '.', '_', '-': the actor its "
                        "calls are journaled as")  # fmt: skip
    create.add_argument("--scope", default="read", choices=[s.value for s in Scope],
                        help="read < submit < operate < admin, each including the ones "
                        "before (default read)")  # fmt: skip
    create.set_defaults(run=run)
    subcommand(cmds, "list", "every token: name, scope, created, revoked (never a secret)",
               target_args).set_defaults(run=run)  # fmt: skip
    revoke = subcommand(cmds, "revoke", "the token stops working on every node within "
                        "ACTORQ_AUTH_REFRESH seconds", target_args)  # fmt: skip
    revoke.add_argument("name")
    revoke.set_defaults(run=run)


def _json(token: Any) -> dict[str, Any]:
    from actorq.render import iso

    return {"name": token.name, "scope": token.scope.value, "created_at": iso(token.created_at),
            "created_by": token.created_by,
            "revoked_at": None if token.revoked_at is None else iso(token.revoked_at)}  # fmt: skip


def run(args: argparse.Namespace, config: Config) -> int:
    match args.token_cmd:
        case "create":
            scope = parse_scope(args.scope)

            async def create_http(client: Client) -> dict[str, Any]:
                return await client.create_token(args.name, scope.value)

            async def create_db(journal: Journal) -> dict[str, Any]:
                token, secret = new_token(args.name, scope, time.time(), ACTOR.get() or "cli")
                await journal.create_token(token)
                return {**_json(token), "secret": secret}

            created = on_target(args, config, http=create_http, db=create_db)
            print(json.dumps(created, indent=2))
            print("keep the secret now: it is not stored and cannot be shown again",
                  file=sys.stderr)  # fmt: skip
        case "list":

            async def list_http(client: Client) -> list[dict[str, Any]]:
                return await client.tokens()

            async def list_db(journal: Journal) -> list[dict[str, Any]]:
                return [_json(t) for t in await journal.tokens()]

            print(json.dumps(on_target(args, config, http=list_http, db=list_db), indent=2))
        case "revoke":

            async def revoke_http(client: Client) -> dict[str, Any]:
                return await client.revoke_token(args.name)

            async def revoke_db(journal: Journal) -> dict[str, Any]:
                return _json(await journal.revoke_token(args.name, time.time()))

            print(json.dumps(on_target(args, config, http=revoke_http, db=revoke_db), indent=2))
    return OK
