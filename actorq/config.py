"""One ``Config`` for a node. Flags override ``ACTORQ_*`` environment variables, which override
the ``App``'s own settings, which override the defaults here."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from actorq.errors import InvalidInput


def _default_node() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise InvalidInput(f"{attribute.name} must be positive, got {value}")


def _not_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise InvalidInput(f"{attribute.name} must not be negative, got {value}")


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
    queues: tuple[str, ...] | None = None
    app: str | None = None
    node: str = attrs.field(factory=_default_node)
    log_level: str = "INFO"

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds or self.lease_seconds / 3

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        base: Mapping[str, Any] | None = None,
    ) -> Config:
        """Merge ``base`` (an App's settings) < environment < ``flags`` (None means unset)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = dict(base or {})
        for field in attrs.fields(cls):
            raw = env.get(f"ACTORQ_{field.name.upper()}")
            if raw is not None and raw != "":
                values[field.name] = _parse(field, raw)
        values.update({k: v for k, v in (flags or {}).items() if v is not None})
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid configuration: {exc}") from exc


def _parse(field: attrs.Attribute[Any], raw: str) -> Any:
    kind = str(field.type)
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
