"""Configuration: flags over ACTORQ_* variables over an App's settings over defaults."""

from __future__ import annotations

import pytest

from actorq.config import Config
from actorq.errors import InvalidInput


def test_defaults_run_on_the_embedded_sqlite_file() -> None:
    config = Config.load(env={})
    assert config.database_url == "sqlite:///actorq.db"
    assert (config.host, config.port, config.concurrency) == ("127.0.0.1", 8080, 10)
    assert config.heartbeat_interval == config.lease_seconds / 3


def test_flags_override_environment_which_overrides_app_settings() -> None:
    env = {"ACTORQ_CONCURRENCY": "7", "ACTORQ_PORT": "9000", "ACTORQ_QUEUES": "a, b"}
    base = {"concurrency": 3, "lease_seconds": 12.0, "port": 1}
    config = Config.load({"port": 9100, "concurrency": None}, env=env, base=base)
    assert config.port == 9100  # flag
    assert config.concurrency == 7  # environment (the flag was not given)
    assert config.lease_seconds == 12.0  # the App's setting
    assert config.queues == ("a", "b")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ACTORQ_PORT": "eighty"}, "ACTORQ_PORT"),
        ({"ACTORQ_CONCURRENCY": "0"}, "concurrency must be positive"),
        ({"ACTORQ_LEASE_SECONDS": "-1"}, "lease_seconds must be positive"),
        ({"ACTORQ_PREFETCH": "-1"}, "prefetch must not be negative"),
    ],
)
def test_bad_settings_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Config.load(env=env)
