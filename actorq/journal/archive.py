"""Archives: sealed journal ranges moved out of the database into segment files, so the
database stays bounded while the history stays complete and verifiable.

A segment is ``DIR/segment-FIRST-LAST.jsonl.gz`` (seqs zero-padded to 12 digits): gzip'd JSON
Lines, first a header ``{"segment": 1, "first_seq", "last_seq", "columns"}``, then for each
seal a line ``{"seal": {...}}`` (as ``Seal.as_json`` plus its ``digests`` in base64) followed
by one line ``{"row": [...]}`` per journal row of its range, values in ``columns`` order and
exactly as stored (JSON keeps floats exact), so the rows hash as they did when sealed.

``archive`` moves the oldest sealed ranges whose rows all lie before a date and whose tasks
have all left the projection (retention expired or purged them), checking each range against
its seal first. The file is written and synced before the database forgets the rows; the
rows go in one transaction that records each range in ``archived`` first: the journal's
delete trigger refuses every delete but of rows in a recorded range (the one privileged
path). The seals stay in the database, so the chain is whole even without the segments.
The newest row of the journal is never archived (SQLite numbers from the highest seq).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from actorq.errors import InvalidInput
from actorq.journal.base import Journal
from actorq.journal.rows import EVENT_COLUMNS
from actorq.journal.seals import Layout, Seal, seal_hash
from actorq.model import is_control

_NAME = "segment-{:012d}-{:012d}.jsonl.gz"
SEGMENT_ROWS = 200_000  # rows per segment file, at most (whole seals)


@attrs.frozen
class Archived:
    segments: list[str]
    seals: int
    rows: int
    through: int  # the last archived seq


def _seal_json(seal: Seal) -> dict[str, Any]:
    return {**seal.as_json(), "digests": base64.b64encode(seal.digests).decode()}


def _seal_from_json(d: dict[str, Any]) -> Seal:
    return Seal(int(d["first_seq"]), int(d["last_seq"]), int(d["rows"]), d["fields"], d["prev"],
                d["hash"], bool(d["keyed"]), float(d["at"]), d["node"],
                base64.b64decode(d["digests"]))  # fmt: skip


class Segments:
    """The segment files of an archive directory, read in seq order."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InvalidInput(f"archive {str(self.folder)!r} is not a directory")
        found = []
        for path in self.folder.glob("segment-*-*.jsonl.gz"):
            _, first, last = path.name.removesuffix(".jsonl.gz").split("-")
            found.append((int(first), int(last), path))
        self.files = sorted(found)

    def _lines(self, through: int) -> Iterator[tuple[list[str], dict[str, Any]]]:
        """(columns, line) of every seal and row line up to seq ``through``."""
        expected = 1
        for first, last, path in self.files:
            if first > through:
                return
            if first != expected:
                raise InvalidInput(f"archive {self.folder}: no segment holds seqs {expected}-"
                                   f"{first - 1}")  # fmt: skip
            with gzip.open(path, "rt", encoding="utf-8") as f:
                columns = json.loads(f.readline())["columns"]
                for line in f:
                    yield columns, json.loads(line)
            expected = last + 1
        if expected <= through:
            raise InvalidInput(f"archive {self.folder}: no segment holds seqs {expected}-{through}")

    async def rows(self, through: int) -> AsyncIterator[tuple[Any, ...]]:
        """The archived journal rows up to seq ``through``, in ``EVENT_COLUMNS`` order (a
        column the archive lacks reads as null)."""
        for columns, line in self._lines(through):
            if "row" in line:
                values = dict(zip(columns, line["row"], strict=True))
                yield tuple(values.get(c) for c in EVENT_COLUMNS)

    async def seals(self, through: int) -> AsyncIterator[Seal]:
        for _, line in self._lines(through):
            if "seal" in line:
                yield _seal_from_json(line["seal"])


def _write_segment(
    folder: Path, batches: Sequence[tuple[Seal, list[Any]]], sync: Callable[[IO[bytes]], None]
) -> str:
    first, last = batches[0][0].first_seq, batches[-1][0].last_seq
    name = _NAME.format(first, last)
    tmp = folder / (name + ".tmp")
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb") as gz:
            head = {"segment": 1, "first_seq": first, "last_seq": last,
                    "columns": list(EVENT_COLUMNS)}  # fmt: skip
            gz.write((json.dumps(head) + "\n").encode())
            for seal, rows in batches:
                gz.write((json.dumps({"seal": _seal_json(seal)}) + "\n").encode())
                for row in rows:
                    gz.write((json.dumps({"row": list(row)}, ensure_ascii=False) + "\n").encode())
        sync(raw)
    os.replace(tmp, folder / name)
    return name


def _fsync(f: IO[bytes]) -> None:
    f.flush()
    os.fsync(f.fileno())


def _check(seal: Seal, rows: list[Any], key: bytes | None) -> None:
    if seal.keyed and key is None:
        raise InvalidInput("the seals are keyed: set ACTORQ_JOURNAL_KEY to archive")
    layout = Layout(seal.fields, EVENT_COLUMNS)
    encoded = [layout.encode(r)[0] for r in rows]
    if seal_hash(seal.prev, seal.first_seq, seal.last_seq, seal.fields, encoded,
                 key if seal.keyed else None) != seal.hash:  # fmt: skip
        raise InvalidInput(f"seqs {seal.first_seq}-{seal.last_seq} do not match their seal: "
                           "run `actorq journal verify`; nothing archived")  # fmt: skip


async def _eligible(
    journal: Journal, before: float, key: bytes | None
) -> AsyncIterator[tuple[Seal, list[Any]]]:
    """The oldest unarchived seals that may be archived, each with its rows, in order."""
    top = (await journal.seal_mark()).seq
    live = {t.id async for t in journal.tasks()}
    through = await journal.archived_through()
    task_at, at_at = EVENT_COLUMNS.index("task_id"), EVENT_COLUMNS.index("at")
    async for seal in journal.seal_list(through):
        if seal.last_seq >= top:
            return
        rows = [r async for r in journal.journal_rows(seal.first_seq - 1, seal.last_seq)]
        if any(r[at_at] >= before or (r[task_at] in live and not is_control(r[task_at]))
               for r in rows):  # fmt: skip
            return
        _check(seal, rows, key)
        yield seal, rows


async def archive(
    journal: Journal,
    folder: str | os.PathLike[str],
    before: float,
    key: bytes | None,
    at: float,
    segment_rows: int = SEGMENT_ROWS,
) -> Archived:
    """Move the archivable sealed ranges to segment files in ``folder``."""
    target = Path(folder)
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    names: list[str] = []
    seals = rows = 0
    batch: list[tuple[Seal, list[Any]]] = []
    size = 0

    async def flush() -> None:
        nonlocal seals, rows, batch, size
        name = await asyncio.to_thread(_write_segment, target, batch, _fsync)
        rows += await journal.remove_archived([s for s, _ in batch], name, at)
        names.append(name)
        seals += len(batch)
        batch, size = [], 0

    async for seal, found in _eligible(journal, before, key):
        batch.append((seal, found))
        size += len(found)
        if size >= segment_rows:
            await flush()
    if batch:
        await flush()
    return Archived(names, seals, rows, await journal.archived_through())
