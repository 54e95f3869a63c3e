"""The row codec both journals share."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from actorq.journal.rows import TASK_COLUMNS, dumps, dumps_checked, task_from_row, task_to_row
from actorq.model import Task, TaskState


def test_task_columns_follow_the_task_fields_in_order() -> None:
    # task_from_row builds a Task positionally from a row in TASK_COLUMNS order.
    assert tuple(a.name for a in attrs.fields(Task)) == TASK_COLUMNS


def test_a_task_survives_a_round_trip_through_a_row() -> None:
    task = Task(
        id="t1", type="echo", queue="q", payload={"ü": [1, None, "x"]}, priority=-3,
        state=TaskState.RUNNING, attempt=2, max_attempts=5, timeout=1.5, run_at=10.0,
        created_at=9.0, updated_at=11.0, seq=42, metadata={"m": True}, idempotency_key="k",
        result=None, error="boom", started_at=10.5, finished_at=None, worker="n/w1",
        lease_expires_at=40.0,
    )  # fmt: skip
    assert task_from_row(task_to_row(task)) == task


@pytest.mark.parametrize(
    "value",
    [None, {}, [], "", 'é\u2028\x00"\\', 0, -1.5, 1e300, True, {"a": [1, {"b": None}], "ü": "ß"}],
)
def test_a_checked_value_is_written_as_dumps_writes_it(value: Any) -> None:
    assert dumps_checked(value) == dumps(value)
