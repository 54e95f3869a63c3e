"""Storage: the append-only journal and the tasks projection, behind the ``Journal`` protocol."""

from __future__ import annotations

from actorq.journal.base import Journal


def journal_from_url(url: str) -> Journal:
    """The journal a database URL names (not yet opened): ``sqlite:///...`` or ``postgresql://...``."""
    if url.startswith("sqlite://"):
        from actorq.journal.sqlite import SqliteJournal, path_from_url

        return SqliteJournal(path_from_url(url))
    if url.startswith(("postgresql://", "postgres://")):
        from actorq.journal.postgres import PostgresJournal  # type: ignore[import-not-found,unused-ignore]

        journal: Journal = PostgresJournal(url)
        return journal
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://...")
