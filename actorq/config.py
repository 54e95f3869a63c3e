"""One ``Config`` for a node. Flags override ``ACTORQ_*`` environment variables, which override
a configuration file (``actorq.toml``), which overrides the ``App``'s own settings, which
override the defaults here."""

from __future__ import annotations

import difflib
import os
import socket
import tomllib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from actorq.errors import InvalidInput
from actorq.queues import Tier, parse_queues, served
from actorq.retry import DEFAULT, PolicyError, RetryPolicy, parse_spec
from actorq.units import parse_duration, parse_rate


def _default_node() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise InvalidInput(f"{attribute.name} must be positive, got {value}")


def _not_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise InvalidInput(f"{attribute.name} must not be negative, got {value}")


def _retention(value: str | float) -> float:
    return parse_duration(value, "retention")


def _rate(_inst: object, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        parse_rate(value, "rate_limit")


_DURATION = {"duration": True}  # a field written as 7d, 12h or seconds (actorq.units)


def _queue_spec(_inst: object, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        parse_queues(",".join(value))


def _retry_spec(_inst: object, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        try:
            parse_spec(value)
        except PolicyError as exc:
            raise InvalidInput(f"retry {value!r}: {exc}") from None


_AUTH_MODES = ("auto", "required", "off")
_SWITCH = {"1": True, "true": True, "yes": True, "on": True,
           "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def _auth_mode(_inst: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in _AUTH_MODES:
        raise InvalidInput(f"auth must be one of {', '.join(_AUTH_MODES)}, got {value!r}")


_EVENT_LOOPS = ("uvloop", "asyncio")


def _event_loop(_inst: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in _EVENT_LOOPS:
        raise InvalidInput(f"event_loop must be uvloop or asyncio, got {value!r}")


def _switch(_inst: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value.lower() not in _SWITCH:
        raise InvalidInput(f"{attribute.name} must be 1 or 0 (true, false), got {value!r}")


@attrs.frozen
class Config:
    database_url: str = "sqlite:///actorq.db"
    # How long the command line waits for the database to answer before it gives up (exit 3).
    connect_timeout: float = attrs.field(default=5.0, validator=_positive)
    host: str = "127.0.0.1"
    port: int = 8080
    concurrency: int = attrs.field(default=10, validator=_positive)
    lease_seconds: float = attrs.field(default=30.0, validator=_positive)
    # Leases are renewed this often; a third of the lease survives two lost heartbeats.
    heartbeat_seconds: float | None = None
    # Tasks each worker holds claimed beside the one it runs, so it finds work at once; up to
    # 8 times more while tasks run far shorter than a claim takes (see dispatcher.Prefetch).
    # 0: a worker holds only the task it runs.
    prefetch: int = attrs.field(default=1, validator=_not_negative)
    shutdown_grace: float = attrs.field(default=10.0, validator=_positive)
    # Slow fallback for work that no wake-up announced (another process wrote the journal).
    poll_seconds: float = attrs.field(default=1.0, validator=_positive)
    max_body_bytes: int = attrs.field(default=1024 * 1024, validator=_positive)
    max_batch: int = attrs.field(default=1000, validator=_positive)
    # Events a live stream's reader (SSE, WebSocket) may have waiting; past it, "lagged".
    stream_buffer: int = attrs.field(default=1000, validator=_positive)
    # The queues this node serves, in the order and with the weights of ``--queues``
    # (entries ``NAME`` or ``NAME:WEIGHT``, see actorq.queues.parse_queues); None: all.
    queues: tuple[str, ...] | None = attrs.field(default=None, validator=_queue_spec)
    # Finished tasks leave the tasks projection this long after they finished (an 'expired'
    # event; their history stays in the journal). 0 keeps them for ever.
    retention: float = attrs.field(default=7 * 86400.0, converter=_retention, metadata=_DURATION)
    # A handler result whose JSON is larger is refused: the task is dead-lettered at once.
    max_result_bytes: int = attrs.field(default=1024 * 1024, validator=_positive)
    # Requests per client address, e.g. "200/s" or "1000/m" (actorq.units); None: no limit.
    rate_limit: str | None = attrs.field(default=None, validator=_rate)
    app: str | None = None
    node: str = attrs.field(factory=_default_node)
    log_level: str = "INFO"
    # json or text; None: json unless stdout is a terminal (actorq.logs).
    log_format: str | None = None
    # The node's default retry policy, for tasks whose submission, queue and type set none:
    # ``exponential,base=1,cap=300`` or its JSON form (see actorq.retry). None: the built-in.
    retry: str | None = attrs.field(default=None, validator=_retry_spec)
    # API tokens (actorq.auth): "auto" checks them once a token exists, "required" always,
    # "off" never (``serve --no-auth``; a warning at every start).
    auth: str = attrs.field(default="auto", validator=_auth_mode)
    # A node reads the tokens table again at most this often: a token created or revoked on
    # another node counts here within this many seconds.
    auth_refresh: float = attrs.field(default=1.0, validator=_positive)
    # "1": /metrics answers without a token.
    metrics_public: str = attrs.field(default="0", validator=_switch)
    # Addresses the example ``webhook`` type may call although they are internal (loopback,
    # private...): IP addresses or networks (CIDR), e.g. 127.0.0.1,10.0.0.0/8.
    webhook_allow: tuple[str, ...] | None = None
    # Origins whose pages may call the API from a browser (CORS), e.g.
    # https://ops.example.com; "*" any. None: no cross-origin call is allowed.
    cors_origins: tuple[str, ...] | None = None
    # "0": ``serve`` without ``--app`` loads no example task types (``--no-example-types``).
    example_types: str = attrs.field(default="1", validator=_switch)
    # The journal's seals: HMAC-SHA256 with this key when set (README "Audit trail"), and
    # written this often while events arrive.
    journal_key: str | None = attrs.field(default=None, repr=False)
    seal_seconds: float = attrs.field(default=1.0, validator=_positive)
    # The event loop of ``serve`` and ``worker``: uvloop where it is installed (not on
    # Windows; the standard loop then), or the standard library's asyncio loop.
    event_loop: str = attrs.field(default="uvloop", validator=_event_loop)

    @property
    def retry_policy(self) -> RetryPolicy:
        return DEFAULT if self.retry is None else parse_spec(self.retry)

    @property
    def metrics_open(self) -> bool:
        return _SWITCH[self.metrics_public.lower()]

    @property
    def with_example_types(self) -> bool:
        return _SWITCH[self.example_types.lower()]

    @property
    def queue_tiers(self) -> tuple[Tier, ...] | None:
        return None if self.queues is None else parse_queues(",".join(self.queues))

    @property
    def served_queues(self) -> tuple[str, ...] | None:
        """The names of the queues served, without their weights."""
        return served(self.queue_tiers)

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds or self.lease_seconds / 3

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        base: Mapping[str, Any] | None = None,
        file: str | os.PathLike[str] | None = None,
    ) -> Config:
        """Merge ``base`` (an App's settings) < the configuration file < environment <
        ``flags`` (None means unset).

        The file is ``file`` if given, else ``ACTORQ_CONFIG``, else ``./actorq.toml`` when it
        exists; a file named explicitly must exist.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = dict(base or {})
        values.update(read_file(file or env.get("ACTORQ_CONFIG") or None))
        for field in attrs.fields(cls):
            raw = env.get(f"ACTORQ_{field.name.upper()}")
            if raw is not None and raw != "":
                values[field.name] = _parse(field, raw)
        values.update({k: v for k, v in (flags or {}).items() if v is not None})
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid configuration: {exc}") from exc


DEFAULT_FILE = "actorq.toml"


def read_file(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The settings in the TOML file ``path`` (None: ``./actorq.toml`` if there is one),
    checked against the ``Config`` fields: an unknown key or a value of the wrong type is an
    ``InvalidInput`` that names the key."""
    target = Path(path) if path is not None else Path(DEFAULT_FILE)
    if path is None and not target.is_file():
        return {}
    try:
        with target.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise InvalidInput(f"configuration file {str(target)!r} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read configuration file {str(target)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{target}: not valid TOML: {exc}") from None
    fields = {field.name: field for field in attrs.fields(Config)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidInput(f"{target}: unknown key {key!r}{hint}")
        values[key] = _typed(target, field, value)
    return values


def _typed(path: Path, field: attrs.Attribute[Any], value: Any) -> Any:
    """``value`` as the field's type, or an error naming the key: TOML has types of its own,
    so nothing is converted from text (an integer is fine where a float is due)."""
    kind = str(field.type).removesuffix(" | None")
    if field.metadata.get("duration"):
        return _duration(path, field, value)
    if isinstance(value, bool):
        ok = False  # a bool is an int to Python, but no setting is a flag
    elif kind == "int":
        ok = isinstance(value, int)
    elif kind == "float":
        ok = isinstance(value, int | float)
        value = float(value) if ok else value
    elif kind.startswith("tuple"):
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        want = {"int": "an integer", "float": "a number", "str": "a string"}
        expected = want.get(kind, "a list of strings")
        raise InvalidInput(f"{path}: {field.name} must be {expected}, got {value!r}")
    return value


def _duration(path: Path, field: attrs.Attribute[Any], value: Any) -> float:
    try:
        return parse_duration(value, field.name)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from None


def _parse(field: attrs.Attribute[Any], raw: str) -> Any:
    kind = str(field.type)
    if field.metadata.get("duration"):
        return parse_duration(raw, f"ACTORQ_{field.name.upper()}")
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(q.strip() for q in raw.split(",") if q.strip())
    except ValueError as exc:
        name = f"ACTORQ_{field.name.upper()}"
        raise InvalidInput(f"{name}={raw!r} is not a valid {kind}") from exc
    return raw
