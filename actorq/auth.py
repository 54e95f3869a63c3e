"""API tokens and their scopes, and who a request acts as.

A token is a random secret shown once when it is created; the database keeps only its SHA-256,
so whoever reads the database cannot call the API with it. Tokens live in the database, so
every node of a cluster knows the same ones; each node keeps a copy (``Keyring``) that it
reads again at most ``refresh`` seconds after the last read, which bounds how long a revoked
token still works on a node that did not revoke it.

Scopes are ordered: each one includes those before it (``read`` < ``submit`` < ``operate`` <
``admin``), so an ``operate`` token may also submit and read.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import attrs

from actorq.errors import InvalidInput

T = TypeVar("T")


class Scope(enum.StrEnum):
    READ = "read"  # every GET
    SUBMIT = "submit"  # POST /api/v1/tasks
    OPERATE = "operate"  # cancel, retry, queues, schedules, dead letters
    ADMIN = "admin"  # tokens

    def covers(self, needed: Scope) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {scope: i for i, scope in enumerate(Scope)}


@attrs.frozen
class Token:
    """One row of the ``tokens`` table. ``hash`` never leaves the node."""

    name: str
    scope: Scope
    hash: str = attrs.field(repr=False)
    created_at: float
    created_by: str
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


SECRET_PREFIX = "aq_"  # noqa: S105 - not a secret, a marker: makes a leaked secret easy to recognize (secret scanners, logs)
RESERVED = "anonymous"  # the actor of API calls while auth is off
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def check_name(name: str) -> str:
    """A token's name is what the journal records as the actor of its calls: 1-100 letters,
    digits, ``.``, ``_``, ``-`` (no ``:``, which the CLI's ``cli:user@host`` actors use)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"a token name is 1-100 letters, digits, '.', '_' or '-', got {name!r}")
    if name == RESERVED:
        raise InvalidInput(f"{RESERVED!r} is what calls without a token are journaled as")
    return name


def parse_scope(value: object) -> Scope:
    try:
        return Scope(str(value))
    except ValueError:
        names = ", ".join(s.value for s in Scope)
        raise InvalidInput(f"scope must be one of {names}, got {value!r}") from None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(name: str, scope: Scope, at: float, by: str) -> tuple[Token, str]:
    """A fresh token and its secret (256 random bits); only the token is stored."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    return Token(check_name(name), scope, digest(secret), at, by), secret


def find(tokens: Sequence[Token], secret: str) -> Token | None:
    """The active token whose secret this is. Every stored hash is compared, each in constant
    time, so how long this takes says nothing about which token came close."""
    wanted = digest(secret)
    found = None
    for token in tokens:
        if hmac.compare_digest(token.hash, wanted) and token.active:
            found = token
    return found


class Keyring:
    """A node's copy of the tokens table, read again when it is older than ``refresh``
    seconds (concurrent requests share one read). Auth is on once any token was ever created
    (a revoked one included: revoking the last token must not open the API), or always when
    ``required``."""

    def __init__(
        self,
        load: Callable[[], Awaitable[list[Token]]],
        clock: Callable[[], float],
        *,
        refresh: float = 1.0,
        required: bool = False,
    ) -> None:
        self._load = load
        self._clock = clock
        self._refresh = refresh
        self._required = required
        self._tokens: list[Token] = []
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def tokens(self) -> list[Token]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._refresh:
            async with self._lock:
                if self._read_at is None or self._clock() - self._read_at >= self._refresh:
                    self._tokens = await self._load()
                    self._read_at = self._clock()
        return self._tokens

    def forget(self) -> None:
        """Read the table again at the next request (this node created or revoked one)."""
        self._read_at = None

    async def enabled(self) -> bool:
        return self._required or bool(await self.tokens())

    async def authenticate(self, secret: str) -> Token | None:
        return find(await self.tokens(), secret)


# Who the current request or command acts as: the HTTP layer sets it to the token's name, the
# command line to ``cli:user@host``; the runtime stamps it on the operations it writes (see
# ``Runtime``), and the journal on their events. Unset: the node itself decides.
ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("actorq_actor", default=None)


def stamped(op: T) -> T:
    """A journal operation marked with who asked for it (``ACTOR``), so its events name
    them; unmarked (no actor set), the journal names the node that wrote it."""
    actor = ACTOR.get()
    if actor is None or not attrs.has(type(op)) or getattr(op, "actor", actor) is not None:
        return op
    marked: T = attrs.evolve(op, actor=actor)  # type: ignore[misc]
    return marked
