"""Walking the chain of seals against the journal's rows: what ``actorq journal verify`` checks.

Both come as streams in seq order (from the database, from archive segments, or both one
after the other), so a check holds one seal's rows at a time, whatever the journal's length.
The first problem found ends the walk: it names the seq where the history stops being the
one that was sealed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs

from actorq.journal.seals import Layout, Seal, seal_hash


@attrs.frozen
class Finding:
    # altered | missing | inserted | reordered | chain | seal | key | unkeyed | expect
    kind: str
    seq: int | None
    message: str


@attrs.frozen
class ChainReport:
    seals: int
    sealed_rows: int
    head: Seal | None
    problem: Finding | None
    unsealed_rows: int
    first_unsealed: int | None
    unchecked_rows: int = 0  # archived rows whose segments were not given
    expect: str | None = None
    expect_found: bool | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.expect_found is not False

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "seals": self.seals, "sealed_rows": self.sealed_rows,
            "head": None if self.head is None else {"seq": self.head.last_seq,
                                                    "hash": self.head.hash},
            "problem": None if self.problem is None else attrs.asdict(self.problem),
            "unsealed_rows": self.unsealed_rows, "first_unsealed": self.first_unsealed,
            "unchecked_rows": self.unchecked_rows, "expect": self.expect,
            "expect_found": self.expect_found,
        }  # fmt: skip


class _Peek:
    """An async iterator of rows that can look at its next row without taking it."""

    def __init__(self, rows: AsyncIterator[Sequence[Any]], seq_at: int) -> None:
        self._rows = rows
        self._next: Sequence[Any] | None = None
        self._done = False
        self.seq_at = seq_at

    async def peek(self) -> Sequence[Any] | None:
        if self._next is None and not self._done:
            try:
                self._next = await anext(self._rows)
            except StopAsyncIteration:
                self._done = True
        return self._next

    async def take_through(self, last: int) -> list[Sequence[Any]]:
        taken = []
        while (row := await self.peek()) is not None and int(row[self.seq_at]) <= last:
            taken.append(row)
            self._next = None
        return taken


def parse_expect(text: str) -> tuple[int, str]:
    seq, sep, value = text.partition(":")
    if not sep or not seq.strip().isdigit() or not value:
        raise ValueError(f"--expect wants SEQ:HASH (as `actorq journal head` prints), got {text!r}")
    return int(seq), value


def locate(seal: Seal, rows: Sequence[Sequence[Any]], layout: Layout, seq_at: int) -> Finding:
    """The first row of ``rows`` that is not as ``seal`` recorded it."""
    recorded = seal.row_digests()
    found = [(int(r[seq_at]), layout.digest(r)) for r in rows]
    owners = {d: s for s, d in recorded}
    i = j = 0
    while i < len(recorded) or j < len(found):
        want = recorded[i] if i < len(recorded) else None
        have = found[j] if j < len(found) else None
        if want is not None and (have is None or want[0] < have[0]):
            return Finding("missing", want[0], f"seq {want[0]} was sealed but is gone")
        if have is not None and (want is None or have[0] < want[0]):
            return Finding("inserted", have[0], f"seq {have[0]} was not there when sealed")
        assert want is not None
        assert have is not None
        if want[1] != have[1]:
            other = owners.get(have[1])
            if other is not None and other != have[0]:
                return Finding("reordered", have[0],
                               f"seq {have[0]} holds what was sealed as seq {other}")  # fmt: skip
            return Finding("altered", have[0], f"seq {have[0]} differs from what was sealed")
        i, j = i + 1, j + 1
    return Finding("seal", seal.first_seq,
                   f"the seal of seqs {seal.first_seq}-{seal.last_seq} does not match its "
                   "rows (the seal itself was altered)")  # fmt: skip


async def check_chain(
    seals: AsyncIterator[Seal],
    rows: AsyncIterator[Sequence[Any]],
    columns: Sequence[str],
    key: bytes | None,
    *,
    unchecked_through: int = 0,
    expect: tuple[int, str] | None = None,
) -> ChainReport:
    """Check every seal's link to the one before and its hash over ``rows`` (journal rows
    in ``columns`` order, in seq order). Seals up to ``unchecked_through`` (archived, with no
    segment at hand) are checked as links only."""
    seq_at = columns.index("seq")
    peek = _Peek(rows, seq_at)
    count = sealed = unchecked = 0
    prev: Seal | None = None
    problem: Finding | None = None
    expect_found = None if expect is None else False
    async for seal in seals:
        count += 1
        if expect is not None and seal.last_seq == expect[0]:
            expect_found = seal.hash == expect[1]
        prev_hash, prev_last = ("", 0) if prev is None else (prev.hash, prev.last_seq)
        if seal.prev != prev_hash or seal.first_seq != prev_last + 1:
            problem = Finding("chain", seal.first_seq,
                              f"the seal of seqs {seal.first_seq}-{seal.last_seq} does not follow "
                              f"the seal before it (ending at seq {prev_last})")  # fmt: skip
            break
        prev = seal
        if seal.last_seq <= unchecked_through:
            unchecked += seal.rows
            await peek.take_through(seal.last_seq)
            continue
        got = await peek.take_through(seal.last_seq)
        early = [r for r in got if int(r[seq_at]) < seal.first_seq]
        if early:
            seq = int(early[0][seq_at])
            problem = Finding("inserted", seq, f"seq {seq} lies before every seal")
            break
        layout = Layout(seal.fields, columns)
        if key is not None and not seal.keyed:
            problem = Finding("unkeyed", seal.first_seq,
                              f"the seal of seqs {seal.first_seq}-{seal.last_seq} is not keyed "
                              "though a key is set: it may have been forged")  # fmt: skip
            break
        if seal.keyed and key is None:
            mismatch = locate(seal, got, layout, seq_at)
            problem = (
                mismatch
                if mismatch.kind != "seal"
                else Finding(
                    "key",
                    seal.first_seq,
                    "the seals are keyed: set ACTORQ_JOURNAL_KEY to check them",
                )
            )
            break
        encoded = [layout.encode(r)[0] for r in got]
        if seal_hash(seal.prev, seal.first_seq, seal.last_seq, seal.fields, encoded,
                     key) != seal.hash:  # fmt: skip
            problem = locate(seal, got, layout, seq_at)
            break
        sealed += len(got)
    unsealed, first = 0, None
    if problem is None:
        while (row := await peek.peek()) is not None:
            if first is None:
                first = int(row[seq_at])
            unsealed += 1
            await peek.take_through(int(row[seq_at]))
    return ChainReport(
        count, sealed, prev, problem, unsealed, first, unchecked,
        None if expect is None else f"{expect[0]}:{expect[1]}", expect_found,
    )  # fmt: skip
