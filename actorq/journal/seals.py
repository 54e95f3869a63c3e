"""Seals: proof that the journal was not altered, shared by both backends.

A seal covers the consecutive seqs ``first_seq..last_seq`` (seqs may have gaps: a seal
covers the gap too, so a row slipped into one later is caught). Its hash is taken over the
previous seal's hash and the canonical encoding of every row in the range, so each seal
vouches for all the history before it; with a key (``ACTORQ_JOURNAL_KEY``) it is an
HMAC-SHA256, which nobody without the key can forge. Beside the hash, a seal keeps an 8-byte
digest of each row's content (seq left out) so that a failed check can say which seq differs
and how: altered, missing, inserted, or reordered (content found under another seq).

The canonical encoding (README "Audit trail"), byte for byte:

- a value is a tag byte and its payload: ``N`` (null, no payload), ``I`` (integer: 8 bytes,
  signed, big-endian), ``F`` (float: IEEE 754 binary64, big-endian), ``S`` (text: a 4-byte
  big-endian length, then the UTF-8 bytes). JSON columns (``data``) are the text as stored.
- a row is ``R``, a 2-byte big-endian count of its values, then the values in the order of
  the seal's ``fields`` (the journal's columns when it was sealed, ``rows.EVENT_COLUMNS``).
- a seal's hash is SHA-256 (or HMAC-SHA256 with the key) of ``actorq-seal-1\\n``, then
  ``PREV\\nFIRST:LAST:COUNT:FIELDS\\n`` (PREV the previous seal's hash, empty for the
  first; numbers in decimal), then each row of the range in seq order; written
  ``sha256:HEX`` or ``hmac-sha256:HEX``.
- a row's digest is the first 8 bytes of SHA-256 over its encoding without the ``seq``
  value (``R`` and the count include it no longer).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import attrs

from actorq.journal.rows import EVENT_COLUMNS

T = TypeVar("T")

SCHEME = b"actorq-seal-1\n"
DIGEST_BYTES = 8
_ENTRY = struct.Struct(">q8s")  # seq, digest: one per row in a seal's digests


@attrs.frozen
class Seal:
    first_seq: int
    last_seq: int
    rows: int
    fields: str  # the sealed columns, comma-separated, in encoding order
    prev: str
    hash: str
    keyed: bool
    at: float
    node: str
    digests: bytes = attrs.field(repr=False)  # zlib of (seq, digest) per row, in seq order

    def as_json(self) -> dict[str, Any]:
        return {
            "first_seq": self.first_seq, "last_seq": self.last_seq, "rows": self.rows,
            "fields": self.fields, "prev": self.prev, "hash": self.hash, "keyed": self.keyed,
            "at": self.at, "node": self.node,
        }  # fmt: skip

    def row_digests(self) -> list[tuple[int, bytes]]:
        raw = zlib.decompress(self.digests)
        return [_ENTRY.unpack_from(raw, i) for i in range(0, len(raw), _ENTRY.size)]


SEAL_COLUMNS = (
    "first_seq", "last_seq", "row_count", "fields", "prev", "hash", "keyed", "at", "node",
    "digests",
)  # fmt: skip


def seal_to_row(s: Seal) -> tuple[Any, ...]:
    return (s.first_seq, s.last_seq, s.rows, s.fields, s.prev, s.hash, s.keyed, s.at, s.node,
            s.digests)  # fmt: skip


def seal_from_row(r: Sequence[Any]) -> Seal:
    return Seal(int(r[0]), int(r[1]), int(r[2]), r[3], r[4], r[5], bool(r[6]), float(r[7]),
                r[8], bytes(r[9]))  # fmt: skip


_DOUBLE = struct.Struct(">d")


def encode_value(value: Any) -> bytes:
    # Exact types first, most common first (sealing encodes every journal value); then the
    # general rules: bool is refused rather than taken for an int.
    kind = type(value)
    if kind is str:
        raw: bytes = value.encode("utf-8", "surrogatepass")
        return b"S" + len(raw).to_bytes(4, "big") + raw
    if kind is int:
        whole: int = value
        return b"I" + whole.to_bytes(8, "big", signed=True)
    if kind is float:
        return b"F" + _DOUBLE.pack(value)
    if value is None:
        return b"N"
    if isinstance(value, bool):  # never in the journal
        raise TypeError("a journal value cannot be a boolean")
    if isinstance(value, int):
        return b"I" + value.to_bytes(8, "big", signed=True)
    if isinstance(value, float):
        return b"F" + _DOUBLE.pack(value)
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        return b"S" + len(raw).to_bytes(4, "big") + raw
    raise TypeError(f"a journal value of type {type(value).__name__} has no encoding")


def encode_row(values: Sequence[Any]) -> bytes:
    return b"R" + len(values).to_bytes(2, "big") + b"".join(map(encode_value, values))


class Layout:
    """Where each sealed field sits in a journal row as read (``EVENT_COLUMNS`` order).

    A layout encodes every row of a seal, on the journal's writer: the few strings that
    repeat from row to row (an event's kind, node, worker, actor) are encoded once each.
    """

    def __init__(self, fields: str, columns: Sequence[str]) -> None:
        names = fields.split(",")
        unknown = [n for n in names if n not in columns]
        if unknown or "seq" not in names:
            raise ValueError(f"sealed fields {fields!r} do not fit the journal's {columns}")
        self.index = [columns.index(n) for n in names]
        self._seq = names.index("seq")
        self._full = b"R" + len(names).to_bytes(2, "big")
        self._content = b"R" + (len(names) - 1).to_bytes(2, "big")
        self._plan = [(columns.index(n), n in _REPEATING) for n in names]
        self._known: dict[str, bytes] = {}

    def encode(self, row: Sequence[Any]) -> tuple[bytes, bytes]:
        """The row's canonical encoding, and its digest (its encoding without the seq)."""
        known = self._known
        values = []
        for i, repeats in self._plan:
            value = row[i]
            if type(value) is not str:
                values.append(encode_value(value))
            elif repeats:
                raw = known.get(value)
                if raw is None:
                    raw = encode_value(value)
                    if len(known) < _KNOWN_MOST:
                        known[value] = raw
                values.append(raw)
            else:
                text = value.encode("utf-8", "surrogatepass")
                values.append(b"S" + len(text).to_bytes(4, "big") + text)
        at = self._seq
        head = b"".join(values[:at])
        tail = b"".join(values[at + 1 :])
        full = self._full + head + values[at] + tail
        return full, hashlib.sha256(self._content + head + tail).digest()[:DIGEST_BYTES]

    def digest(self, row: Sequence[Any]) -> bytes:
        return self.encode(row)[1]


# Columns whose values repeat across a seal's rows; the encodings of their strings are kept,
# up to a bound. Strings only: a key equal to another of another type (1, 1.0, True) would
# lend a tampered value the encoding of the one it replaced.
_REPEATING = frozenset({"kind", "node", "worker", "actor"})
_KNOWN_MOST = 1024


def _hasher(key: bytes | None) -> Any:
    return hmac.new(key, digestmod=hashlib.sha256) if key else hashlib.sha256()


def seal_hash(
    prev: str, first: int, last: int, fields: str, encoded: Sequence[bytes], key: bytes | None
) -> str:
    h = _hasher(key)
    h.update(SCHEME)
    h.update(f"{prev}\n{first}:{last}:{len(encoded)}:{fields}\n".encode())
    for row in encoded:
        h.update(row)
    digest: str = h.hexdigest()
    return ("hmac-sha256:" if key else "sha256:") + digest


def make_seal(
    prev: Seal | None,
    rows: Sequence[Sequence[Any]],
    last_seq: int,
    columns: Sequence[str],
    key: bytes | None,
    at: float,
    node: str,
) -> Seal:
    """The seal after ``prev`` over ``rows`` (journal rows in ``columns`` order, in seq
    order), covering every seq up to ``last_seq``."""
    fields = ",".join(columns)
    layout = Layout(fields, columns)
    first = 1 if prev is None else prev.last_seq + 1
    prev_hash = "" if prev is None else prev.hash
    seq_at = columns.index("seq")
    both = [layout.encode(r) for r in rows]
    digests = b"".join(_ENTRY.pack(int(r[seq_at]), d) for r, (_, d) in zip(rows, both, strict=True))
    encoded = [full for full, _ in both]
    return Seal(
        first, last_seq, len(rows), fields, prev_hash,
        seal_hash(prev_hash, first, last_seq, fields, encoded, key), key is not None, at, node,
        zlib.compress(digests),
    )  # fmt: skip


def key_bytes(key: str | None) -> bytes | None:
    return key.encode() if key else None


MakeSeal = Callable[[Seal | None, Sequence[Sequence[Any]], int], Seal]
"""Builds the seal after the given one over the given rows, covering seqs up to the int."""

SEAL_PAGE = 200  # seals per query when a check walks them all (each holds its digests)
ROW_PAGE = 5000  # journal rows per query when a check or an archive walks them


@attrs.frozen
class SealMark:
    """How far a sealer may go: every seq up to ``seq`` is final once the mark is (on
    PostgreSQL, once every transaction with an xid below ``xid`` has ended)."""

    seq: int
    xid: int = 0


async def paged(
    fetch: Callable[[int, int], Awaitable[Sequence[T]]],
    key: Callable[[T], int],
    after: int,
    size: int,
) -> AsyncIterator[T]:
    """Every item after ``after``, ``fetch(after, size)`` a page at a time, ordered by
    ``key``."""
    while True:
        page = await fetch(after, size)
        for item in page:
            yield item
        if len(page) < size:
            return
        after = key(page[-1])


# -- the reads both journals share, over their own SQL -------------------------------------

Query = Callable[..., Awaitable[Sequence[Sequence[Any]]]]
"""A journal's read: SQL text and its arguments, to the rows found."""


async def read_head(query: Query, sql: dict[str, str]) -> Seal | None:
    rows = await query(sql["seal_head"])
    return seal_from_row(rows[0]) if rows else None


def read_seals(query: Query, sql: dict[str, str], after_last_seq: int) -> AsyncIterator[Seal]:
    async def page(after: int, size: int) -> list[Seal]:
        return [seal_from_row(r) for r in await query(sql["seals_after"], after, size)]

    return paged(page, lambda s: s.last_seq, after_last_seq, SEAL_PAGE)


def read_rows(
    query: Query, sql: dict[str, str], after_seq: int, upto: int | None
) -> AsyncIterator[tuple[Any, ...]]:
    top = (1 << 63) - 1 if upto is None else upto
    seq_at = EVENT_COLUMNS.index("seq")

    async def page(after: int, size: int) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await query(sql["rows_after"], after, top, size)]

    return paged(page, lambda r: int(r[seq_at]), after_seq, ROW_PAGE)
