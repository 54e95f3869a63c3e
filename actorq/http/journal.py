"""Journal routes: the audit trail's state for reading (the latest seal, the last verify)."""

from __future__ import annotations

import json

from aiohttp import web

from actorq.http.keys import RUNTIME
from actorq.wire import iso

routes = web.RouteTableDef()


@routes.get("/api/v1/journal/head")
async def journal_head(request: web.Request) -> web.Response:
    """The latest seal, how many rows lie past it, and the outcome of the last verify."""
    journal = request.app[RUNTIME].journal
    seal = await journal.seal_head()
    top = (await journal.head()).journal_seq
    found = await journal.last_verification()
    sealed = 0 if seal is None else seal.last_seq
    verification = None
    if found is not None:
        at, ok, head, report = found
        problem = json.loads(report).get("seals", {}).get("problem")
        verification = {"at": iso(at), "ok": ok, "head_seq": head, "problem": problem}
    return web.json_response({
        "seal": None if seal is None else {
            "seq": seal.last_seq, "first_seq": seal.first_seq, "hash": seal.hash,
            "keyed": seal.keyed, "at": iso(seal.at), "node": seal.node,
        },
        "journal_seq": top,
        "unsealed": max(0, top - sealed),
        "verification": verification,
    })  # fmt: skip
