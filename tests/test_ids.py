"""Task ids: UUIDv7 (RFC 9562) on the clock's time, in the order one process made them."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from actorq import model
from actorq.model import new_id


def ms_of(task_id: str) -> int:
    return uuid.UUID(task_id).int >> 80


def test_an_id_is_a_uuid_version_7_on_the_clocks_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    parsed = uuid.UUID(new_id())
    after = time.time_ns() // 1_000_000
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert before <= parsed.int >> 80 <= after


def test_a_burst_of_ids_sorts_in_order_and_stays_on_the_clock() -> None:
    ids = [new_id() for _ in range(50_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # Many ids share a millisecond; none is stamped after the clock's time.
    assert ms_of(ids[-1]) <= time.time_ns() // 1_000_000
    assert len({ms_of(i) for i in ids}) < len(ids)


def test_a_clock_that_goes_back_does_not_reorder_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    first = new_id()
    monkeypatch.setattr(time, "time_ns", lambda: (ms_of(first) - 5_000) * 1_000_000)
    later = [new_id() for _ in range(100)]
    assert [first, *later] == sorted([first, *later])
    assert {ms_of(i) for i in later} == {ms_of(first)}


def test_a_millisecond_whose_random_part_runs_out_goes_on_in_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = new_id()
    ms = ms_of(first)
    monkeypatch.setattr(time, "time_ns", lambda: ms * 1_000_000)
    monkeypatch.setattr(model, "_last", (ms, (1 << 74) - 1))  # any step runs it out
    following = new_id()
    assert ms_of(following) == ms + 1
    assert following > first
    assert uuid.UUID(following).version == 7


def test_threads_never_share_an_id() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in made for i in out]
    assert len(set(every)) == len(every)
    assert all(out == sorted(out) for out in made)
