"""Storage: the append-only journal and the tasks projection, behind the ``Journal`` protocol.

This module also reads database URLs: which backend one names, whether it is well formed, and
whether the database it names can be reached at all (``probe``), so a command line can tell a
typo from a database that is down before it opens anything.
"""

from __future__ import annotations

import asyncio
import os
import socket
import urllib.parse

from actorq.errors import InvalidInput, StorageError
from actorq.journal.base import Journal

_SQLITE = "sqlite://"
_POSTGRES = ("postgresql://", "postgres://")
_USE = "use sqlite:///FILE (sqlite:////ABSOLUTE/PATH) or postgresql://USER@HOST:PORT/DB"


class DatabaseUrlError(InvalidInput, ValueError):
    """A database URL that names no database we can use: a configuration error, not an outage.

    Also a ``ValueError``, what ``journal_from_url`` raised before it had a type of its own.
    """


def redact_url(url: str) -> str:
    """``url`` without its password, fit for a log line or an error message."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        password = None
    if password:
        url = url.replace(f":{password}@", ":***@")
        url = url.replace(password, "***")  # also a password percent-decoded elsewhere
    return url


def _scrub(text: str, url: str) -> str:
    """``text`` on one line, with ``url``'s password masked wherever it appears."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***")
    return " ".join(text.split())


def backend_of(url: str) -> str:
    """``"sqlite"`` or ``"postgres"``; raises ``DatabaseUrlError`` for anything malformed."""
    shown = redact_url(url)
    if url.startswith(_SQLITE):
        from actorq.journal.sqlite import path_from_url

        if not path_from_url(url):
            raise DatabaseUrlError(f"database URL {shown!r} names no file: {_USE}")
        return "sqlite"
    if url.startswith(_POSTGRES):
        from actorq.journal.postgres import split_url  # type: ignore[import-not-found,unused-ignore]

        try:
            _ = urllib.parse.urlsplit(url).port  # an invalid port raises here
            split_url(url)
        except ValueError as exc:
            raise DatabaseUrlError(f"database URL {shown!r}: {_scrub(str(exc), url)}") from None
        return "postgres"
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite" or scheme.startswith("postgres"):
        raise DatabaseUrlError(f"malformed database URL {shown!r}: {_USE}")
    raise DatabaseUrlError(f"unsupported database URL {shown!r}: {_USE}")


def is_memory_url(url: str) -> bool:
    """Whether ``url`` names an in-memory SQLite database (``sqlite:///:memory:``)."""
    from actorq.journal.sqlite import path_from_url

    return url.startswith(_SQLITE) and path_from_url(url) == ":memory:"


def journal_from_url(url: str) -> Journal:
    """The journal a database URL names (not yet opened): ``sqlite:///...`` or ``postgresql://...``."""
    if backend_of(url) == "sqlite":
        from actorq.journal.sqlite import SqliteJournal, path_from_url

        return SqliteJournal(path_from_url(url))
    from actorq.journal.postgres import PostgresJournal  # type: ignore[import-not-found,unused-ignore]

    journal: Journal = PostgresJournal(url)
    return journal


async def probe(url: str, timeout: float) -> None:
    """Fail fast, in one line, when the database ``url`` names cannot be used.

    Raises ``DatabaseUrlError`` for a malformed URL and ``StorageError`` for a database that
    is down, refuses us, or (SQLite) lives in a directory that is missing or read-only. Opening
    a journal would fail too, but later: a PostgreSQL pool waits a minute for a host that
    never answers.
    """
    if backend_of(url) == "sqlite":
        _probe_sqlite(url)
    else:
        await _probe_postgres(url, timeout)


def _probe_sqlite(url: str) -> None:
    from actorq.journal.sqlite import path_from_url

    path = path_from_url(url)
    if path == ":memory:":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        what = "is not a directory" if os.path.exists(folder) else "does not exist"
        raise StorageError(f"cannot open SQLite database {path!r}: {folder!r} {what}")
    target = path if os.path.exists(path) else folder
    if not os.access(target, os.W_OK):
        raise StorageError(f"cannot open SQLite database {path!r}: {target!r} is not writable")


async def _probe_postgres(url: str, timeout: float) -> None:
    import asyncpg

    from actorq.journal.postgres import split_url  # type: ignore[import-not-found,unused-ignore]

    dsn, _ = split_url(url)
    shown = redact_url(url)
    try:
        async with asyncio.timeout(timeout):  # asyncpg's own timeout leaves out DNS
            conn = await asyncpg.connect(dsn, timeout=timeout)
            await conn.close()
    except TimeoutError:
        reason = f"no answer within {timeout:g}s"
        raise StorageError(f"cannot reach PostgreSQL at {shown}: {reason}") from None
    except ValueError as exc:  # asyncpg's reading of the URL (ClientConfigurationError too)
        raise DatabaseUrlError(f"database URL {shown!r}: {_scrub(str(exc), url)}") from None
    except socket.gaierror as exc:
        reason = f"unknown host ({exc.strerror})"
        raise StorageError(f"cannot reach PostgreSQL at {shown}: {reason}") from None
    except ConnectionRefusedError:
        raise StorageError(f"cannot reach PostgreSQL at {shown}: connection refused") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = _scrub(str(exc) or type(exc).__name__, url)
        raise StorageError(f"cannot use PostgreSQL at {shown}: {reason}") from None
