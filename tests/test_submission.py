"""The common submission (a type and a payload) takes a shorter way than the converter's,
and must end where the converter ends: the same task, the same refusals."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from actorq import wire
from actorq.errors import InvalidInput, UnknownTaskType
from actorq.retry import Backoff, RetryDefaults, RetryPolicy
from actorq.submission import common_shape
from actorq.tasks import Registry, TaskType, parse_submission

NOW = 1_800_000_000.0
SLOW = RetryPolicy(Backoff.FIXED, base=5.0)
RETRY = RetryDefaults(node=RetryPolicy(base=2.0), queues={"mail": SLOW})


async def _noop(payload: Any) -> None:
    return None


def registry() -> Registry:
    types = Registry()
    types.add(TaskType("plain", _noop))
    types.add(TaskType("mail", _noop, max_attempts=7, timeout=9.5, queue="mail", priority=4))
    types.add(TaskType("own", _noop, retry=RetryPolicy(base=3.0)))
    return types


def _without_id(task: Any) -> dict[str, Any]:
    fields = attrs.asdict(task, recurse=False)
    del fields["id"]
    return fields


@pytest.mark.parametrize(
    "item",
    [
        {"type": "plain"},
        {"type": "plain", "payload": None},
        {"type": "mail", "payload": {"to": "ü@example.org", "n": [1, 2.5, None, True]}},
        {"type": "own", "payload": "text"},
        {"type": "plain", "payload": [[[0]]]},
    ],
)
def test_the_common_shape_makes_the_task_the_converter_makes(item: dict[str, Any]) -> None:
    types = registry()
    quick = common_shape(dict(item), types.get, NOW, RETRY)
    assert quick is not None
    assert _without_id(quick) == _without_id(wire.new_task(dict(item), types.get, NOW, RETRY))
    assert _without_id(parse_submission(dict(item), types, NOW, RETRY)) == _without_id(quick)


@pytest.mark.parametrize(
    "item",
    [
        {"type": "plain", "queue": "mail"},
        {"type": "plain", "payload": 1, "priority": 3},
        {"payload": 1},
        {"type": "plain", "payloads": 1},
        {},
    ],
)
def test_other_shapes_go_the_converters_way(item: dict[str, Any]) -> None:
    assert common_shape(item, registry().get, NOW, RETRY) is None


@pytest.mark.parametrize(
    "item",
    [
        {"type": ""},
        {"type": "x" * 201},
        {"type": "bad\nname"},
        {"type": 5},
        {"type": None},
        {"type": "plain", "payload": float("nan")},
        {"type": "plain", "payload": {"deep": [float("inf")]}},
        {"type": "plain", "payload": {"\ud800": 1}},
        {"type": "plain", "payload": {1: "key not text"}},
        {"type": "plain", "payload": {"set": {1, 2}}},
    ],
)
def test_a_refused_common_submission_gets_the_converters_words(item: dict[str, Any]) -> None:
    types = registry()
    assert common_shape(dict(item), types.get, NOW, RETRY) is None
    with pytest.raises(InvalidInput) as converter:
        wire.new_task(dict(item), types.get, NOW, RETRY)
    with pytest.raises(InvalidInput) as parsed:
        parse_submission(dict(item), types, NOW, RETRY)
    assert str(parsed.value) == str(converter.value)


def test_a_payload_nested_past_the_limit_is_refused_in_the_converters_words() -> None:
    payload: Any = 0
    for _ in range(65):
        payload = [payload]
    item = {"type": "plain", "payload": payload}
    with pytest.raises(InvalidInput, match="nested deeper than 64"):
        parse_submission(item, registry(), NOW, RETRY)


def test_an_unknown_type_in_the_common_shape_is_unknown_as_before() -> None:
    with pytest.raises(UnknownTaskType):
        parse_submission({"type": "nobody", "payload": 1}, registry(), NOW, RETRY)
