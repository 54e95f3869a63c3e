"""The wire format has one source, the converter in ``actorq.wire``, and openapi.json agrees
with it: the same fields of a submission with the same bounds, accepting and refusing the same
values; the same properties of a task and an event, null where the model allows None; the same
states and kinds. A refused field is named in the API's message, in a batch with its item.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
from aiohttp.test_utils import TestClient
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from actorq import retry, wire
from actorq.errors import InvalidInput, UnknownTaskType
from actorq.model import Event, EventKind, Task, TaskState
from actorq.nodes import ServedType
from actorq.retry import Backoff
from actorq.submission import (
    MAX_TEXT,
    RULE,
    Integer,
    Json,
    JsonObject,
    Number,
    Retry,
    Submission,
    Text,
    Time,
)

DOCUMENT = Path(__file__).parent.parent / "actorq" / "http" / "static" / "openapi.json"
SPEC = json.loads(DOCUMENT.read_text())
SPEC_URI = "urn:actorq:openapi"
SCHEMAS = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(SPEC))
NOW = 1_800_000_000.0  # 2027-01-15
TASKS = "/api/v1/tasks"


def schema(name: str, *inside: str) -> dict[str, Any]:
    found: dict[str, Any] = SPEC["components"]["schemas"][name]
    for part in inside:
        found = found[part]
    return found


def validator(name: str, *inside: str) -> jsonschema.Draft202012Validator:
    pointer = "/".join(("", "components", "schemas", name, *inside))
    return jsonschema.Draft202012Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"},
        registry=SCHEMAS,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def defaults_of(name: str) -> ServedType:
    if name != "echo":
        raise UnknownTaskType(name)
    return ServedType(name)


def accepted(field: str, value: Any) -> bool:
    data = {field: value} if field == "type" else {"type": "echo", field: value}
    try:
        wire.new_task(data, defaults_of, NOW)
    except InvalidInput:
        return False
    except UnknownTaskType:
        return True  # a well-formed type no node serves: the field itself was accepted
    return True


# -- submissions ----------------------------------------------------------------------------

SUBMISSION_FIELDS = attrs.fields(Submission)


def test_a_submission_has_the_documented_fields_and_no_other() -> None:
    document = schema("NewTask")
    assert [f.name for f in SUBMISSION_FIELDS] == list(document["properties"])
    required = [f.name for f in SUBMISSION_FIELDS if f.default is attrs.NOTHING]
    assert required == document["required"]
    assert document["additionalProperties"] is False
    with pytest.raises(InvalidInput, match=r"^unknown field\(s\): colour$"):
        wire.new_task({"type": "echo", "colour": "red"}, defaults_of, NOW)


def test_each_field_has_the_documented_bounds() -> None:
    for field in SUBMISSION_FIELDS:
        rule = field.metadata[RULE]
        prop = schema("NewTask", "properties", field.name)
        types = prop.get("type", [])
        match rule:
            case Integer(low, high):
                assert "integer" in types, field.name
                assert (prop["minimum"], prop["maximum"]) == (low, high), field.name
            case Number(low, high, positive):
                assert "number" in types, field.name
                bound = "exclusiveMinimum" if positive else "minimum"
                assert (prop[bound], prop["maximum"]) == (low, high), field.name
            case Text():
                assert "string" in types, field.name
                assert (prop["minLength"], prop["maxLength"]) == (1, MAX_TEXT), field.name
            case JsonObject():
                assert types == "object", field.name
            case Json():
                assert "type" not in prop, field.name  # any JSON value
            case Time():
                assert [s.get("type") for s in prop["oneOf"]] == ["string", "number", "null"]
            case Retry():
                ref = {"$ref": "#/components/schemas/RetryPolicy"}
                assert prop["oneOf"] == [ref, {"type": "null"}], field.name
                policy = schema("RetryPolicy", "properties")
                assert policy["backoff"]["enum"] == [
                    *(b.value for b in Backoff),
                    None,
                ]  # null: default
                for name, low, high in (("base", 0, retry.DELAY_LIMIT), ("cap", 0,
                        retry.DELAY_LIMIT), ("factor", retry.FACTOR_MIN, retry.FACTOR_MAX),
                        ("jitter", 0, 1)):  # fmt: skip
                    assert (policy[name]["minimum"], policy[name]["maximum"]) == (low, high)
            case _:
                pytest.fail(f"{field.name}: a rule this test does not know")


def samples(field: attrs.Attribute[Any]) -> list[Any]:
    """Values around the field's bounds, and of every JSON kind."""
    values: list[Any] = [None, True, 0, 1, -1, 1.5, 5.0, "", "x", "échéance", "a\u0000b",
                         "tab\there", "\u007f", "\u009f", "\u00a0", "x" * MAX_TEXT,
                         "x" * (MAX_TEXT + 1), [], [1], {}, {"a": [1, {"b": None}]}]  # fmt: skip
    rule = field.metadata[RULE]
    if isinstance(rule, Integer | Number):
        for end in (rule.low, rule.high):
            values += [end, end - 1, end + 1, float(end), end - 0.5, end + 0.5]
    if isinstance(rule, Time):
        values += ["2030-01-01T00:00:00Z", "2001-01-01T00:00:00.5+02:00", "tomorrow", -5,
                   1893456000, 1.5e9]  # fmt: skip
    return values


@pytest.mark.parametrize("field", SUBMISSION_FIELDS, ids=lambda f: f.name)
def test_each_field_accepts_exactly_what_the_document_accepts(
    field: attrs.Attribute[Any],
) -> None:
    document = validator("NewTask", "properties", field.name)
    disagree = [
        (value, document.is_valid(value))
        for value in samples(field)
        if document.is_valid(value) != accepted(field.name, value)
    ]
    assert disagree == [], "(value, the document accepts it) where the converter differs"


def test_delay_and_scheduled_at_exclude_each_other_in_both() -> None:
    both = {"type": "echo", "delay": 1, "scheduled_at": "2027-02-01T00:00:00Z"}
    assert not validator("NewTask").is_valid(both)
    with pytest.raises(InvalidInput, match="either 'delay' or 'scheduled_at'"):
        wire.new_task(both, defaults_of, NOW)
    assert validator("NewTask").is_valid({**both, "delay": None})
    wire.new_task({**both, "delay": None}, defaults_of, NOW)


def test_a_refusal_names_its_field() -> None:
    cases = {
        "priority": (1.5, "field 'priority' must be an integer from -2147483648 to 2147483647, "
                          "got 1.5"),
        "max_attempts": (1001, "field 'max_attempts' must be an integer from 1 to 1000"),
        "timeout": (0, "field 'timeout' must be positive"),
        "queue": ("a\u0000", "field 'queue' must not hold control characters or lone surrogates"),
        "payload": ([math.inf], "field 'payload' holds NaN or an infinity"),
        "metadata": ([], "field 'metadata' must be a JSON object"),
    }  # fmt: skip
    for field, (value, message) in cases.items():
        with pytest.raises(InvalidInput) as refused:
            wire.new_task({"type": "echo", field: value}, defaults_of, NOW)
        assert str(refused.value) == message
    with pytest.raises(InvalidInput, match=r"^field 'type' is required$"):
        wire.new_task({"type": None}, defaults_of, NOW)
    with pytest.raises(UnknownTaskType):  # before the other fields: it is a 422 of its own
        wire.new_task({"type": "nope", "priority": 1.5}, defaults_of, NOW)


def test_null_and_absent_fields_take_the_types_defaults() -> None:
    nulls = {f.name: None for f in SUBMISSION_FIELDS if f.name not in ("type", "metadata")}
    defaults = ServedType("echo", queue="mail", priority=3, max_attempts=9, timeout=2.5)
    for data in ({"type": "echo"}, {"type": "echo", **nulls}):
        new = wire.new_task(data, lambda _: defaults, NOW)
        assert (new.queue, new.priority, new.max_attempts, new.timeout) == ("mail", 3, 9, 2.5)
        assert (new.payload, new.run_at, new.idempotency_key) == (None, None, None)
        assert new.metadata == {}


async def test_a_batch_refusal_names_its_item_and_field(client: TestClient) -> None:
    batch = [{"type": "echo"}] * 3 + [{"type": "echo", "timeout": 0}]
    resp = await client.post(TASKS, json=batch)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["index"], error["message"]) == (3, "task [3]: field 'timeout' must be positive")
    resp = await client.post(TASKS, json={"type": "echo", "priority": 2**31})
    message = (await resp.json())["error"]["message"]
    assert message == "field 'priority' must be an integer from -2147483648 to 2147483647"


# -- tasks and events -----------------------------------------------------------------------


def tasks() -> tuple[Task, Task]:
    """A task with every optional field None, and one with every field set."""
    bare = Task(id="t1", type="echo", queue="default", payload=None, priority=0,
                state=TaskState.QUEUED, attempt=0, max_attempts=3, timeout=None, run_at=NOW,
                created_at=NOW, updated_at=NOW)  # fmt: skip
    full = attrs.evolve(bare, payload={"a": [1]}, state=TaskState.SUCCEEDED, attempt=1,
                        timeout=2.5, metadata={"who": "x"}, idempotency_key="k",
                        result={"ok": True}, error="once", started_at=NOW + 1,
                        finished_at=NOW + 2, worker="n/w1", lease_expires_at=NOW + 30,
                        updated_at=NOW + 2)  # fmt: skip
    return bare, full


def events() -> tuple[Event, Event]:
    bare = Event(EventKind.SUBMITTED, "t1", NOW, "n1", seq=1)
    full = Event(EventKind.FAILED, "t1", NOW + 0.25, "n1",
                 {"error": "boom", "retry_at": NOW + 5, "attempt": 1}, "n1/w2", 7,
                 "alice")  # fmt: skip
    return bare, full


@pytest.mark.parametrize(
    ("name", "values", "render"),
    [("Task", tasks(), wire.task_json), ("Event", events(), wire.event_json)],
)
def test_tasks_and_events_have_exactly_the_documented_properties(
    name: str, values: tuple[Any, Any], render: Any
) -> None:
    document = schema(name)
    bare, full = (render(v) for v in values)
    assert set(full) == set(document["properties"]) == set(document["required"])
    for shown in (bare, full):
        validator(name).validate(shown)
    for prop in document["properties"]:
        allows_null = validator(name, "properties", prop).is_valid(None)
        assert allows_null == (bare[prop] is None), prop  # null exactly where None may be


def test_states_and_kinds_are_the_documented_enums_sent_as_plain_strings() -> None:
    assert [s.value for s in TaskState] == schema("TaskState")["enum"]
    assert [k.value for k in EventKind] == schema("EventKind")["enum"]
    assert type(wire.task_json(tasks()[0])["state"]) is str
    assert type(wire.event_json(events()[0])["kind"]) is str
    assert type(wire.task_from_json(wire.task_json(tasks()[0])).state) is TaskState


def test_times_go_out_as_iso_and_come_back_as_seconds() -> None:
    _, task = tasks()
    shown = wire.task_json(task)
    assert shown["scheduled_at"] == "2027-01-15T08:00:00.000000Z"
    assert shown["lease_expires_at"] == "2027-01-15T08:00:30.000000Z"
    assert shown["timeout"] == 2.5  # a number of seconds, not a time
    _, event = events()
    assert wire.event_json(event)["data"]["retry_at"] == "2027-01-15T08:00:05.000000Z"


@pytest.mark.parametrize("task", tasks())
def test_the_client_reads_back_the_task_the_node_rendered(task: Task) -> None:
    assert wire.task_from_json(json.loads(json.dumps(wire.task_json(task)))) == task


@pytest.mark.parametrize("event", events())
def test_the_client_reads_back_the_event_the_node_rendered(event: Event) -> None:
    assert wire.event_from_json(json.loads(json.dumps(wire.event_json(event)))) == event
