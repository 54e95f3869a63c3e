"""Configuration: flags over ACTORQ_* variables over a configuration file (actorq.toml, or
--config / ACTORQ_CONFIG) over an App's settings over defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import actorq
from actorq.cli import OK, USAGE, main
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
        ({"ACTORQ_EVENT_LOOP": "trio"}, "event_loop must be uvloop or asyncio"),
    ],
)
def test_bad_settings_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Config.load(env=env)


# -- the configuration file -----------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_file_sits_below_environment_and_flags_and_above_app_settings(tmp_path: Path) -> None:
    file = write(
        tmp_path / "settings.toml",
        'port = 9000\nconcurrency = 4\nlease_seconds = 20\nqueues = ["mail", "bulk"]\n'
        'host = "0.0.0.0"\n',
    )
    env = {"ACTORQ_PORT": "9001", "ACTORQ_HOST": ""}
    base = {"concurrency": 2, "shutdown_grace": 3.0, "lease_seconds": 5.0}
    config = Config.load({"concurrency": 8, "host": None}, env=env, base=base, file=file)
    assert config.concurrency == 8  # flag over file over App
    assert config.port == 9001  # environment over file
    assert config.host == "0.0.0.0"  # file: an empty variable and an unset flag say nothing
    assert config.lease_seconds == 20.0  # file over App; an integer where a float is due
    assert config.shutdown_grace == 3.0  # App, the file says nothing
    assert config.queues == ("mail", "bulk")
    assert config.max_batch == 1000  # default


def test_actorq_toml_in_the_working_directory_is_read_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Config.load(env={}).concurrency == 10, "no actorq.toml: the defaults, no error"
    write(tmp_path / "actorq.toml", "concurrency = 6\n")
    assert Config.load(env={}).concurrency == 6
    assert actorq.App(concurrency=2).config().concurrency == 6


def test_a_named_file_replaces_actorq_toml_and_the_flag_names_it_over_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "actorq.toml", "concurrency = 6\nport = 1\n")
    from_env = write(tmp_path / "env.toml", "concurrency = 7\n")
    from_flag = write(tmp_path / "flag.toml", "concurrency = 9\n")
    env = {"ACTORQ_CONFIG": str(from_env)}
    assert (Config.load(env=env).concurrency, Config.load(env=env).port) == (7, 8080)
    assert Config.load(env=env, file=from_flag).concurrency == 9


def test_an_unknown_key_is_an_error_that_names_it(tmp_path: Path) -> None:
    file = write(tmp_path / "actorq.toml", 'databse_url = "sqlite:///x.db"\n')
    with pytest.raises(InvalidInput, match=r"unknown key 'databse_url'.*'database_url'"):
        Config.load(env={}, file=file)
    file = write(tmp_path / "actorq.toml", "[server]\nport = 1\n")
    with pytest.raises(InvalidInput, match=r"unknown key 'server'"):
        Config.load(env={}, file=file)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('port = "8080"', "port must be an integer, got '8080'"),
        ("concurrency = 2.5", "concurrency must be an integer"),
        ("lease_seconds = true", "lease_seconds must be a number, got True"),
        ('lease_seconds = "30"', "lease_seconds must be a number"),
        ('queues = "a,b"', "queues must be a list of strings"),
        ("queues = [1]", "queues must be a list of strings"),
        ("database_url = 5", "database_url must be a string, got 5"),
        ("concurrency = 0", "concurrency must be positive"),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_that_names_the_key(
    tmp_path: Path, line: str, message: str
) -> None:
    file = write(tmp_path / "actorq.toml", line + "\n")
    with pytest.raises(InvalidInput, match=re.escape(message)):
        Config.load(env={}, file=file)


def test_a_file_named_explicitly_must_exist_and_be_toml(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(InvalidInput, match=r"missing\.toml' does not exist"):
        Config.load(env={}, file=missing)
    with pytest.raises(InvalidInput, match=r"missing\.toml' does not exist"):
        Config.load(env={"ACTORQ_CONFIG": str(missing)})
    broken = write(tmp_path / "broken.toml", "port = \n")
    with pytest.raises(InvalidInput, match=r"broken\.toml: not valid TOML"):
        Config.load(env={}, file=broken)


# -- the command line -----------------------------------------------------------------------

COMMANDS = [
    ["serve"],
    ["worker"],
    ["submit", "echo"],
    ["migrate"],
    *(["journal", cmd] for cmd in ("replay", "verify", "export", "rebuild")),
]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_takes_config_and_refuses_an_unknown_key_in_one_line(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path / "bad.toml", "concurency = 3\n")
    assert main([*argv, "--config", str(file)]) == USAGE
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"actorq: {file}: unknown key 'concurency' (did you mean 'concurrency'?)"
    ]


def test_the_command_line_uses_the_file_below_its_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ACTORQ_DATABASE_URL", raising=False)
    monkeypatch.delenv("ACTORQ_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "actorq.toml", f'database_url = "sqlite:///{tmp_path}/from-file.db"\n')
    assert main(["migrate"]) == OK
    assert (tmp_path / "from-file.db").exists()
    assert main(["--config", str(tmp_path / "actorq.toml"), "migrate",
                 "--database-url", f"sqlite:///{tmp_path}/from-flag.db"]) == OK  # fmt: skip
    assert (tmp_path / "from-flag.db").exists()
    assert main(["migrate", "--config", str(tmp_path / "nope.toml")]) == USAGE
    assert "nope.toml' does not exist" in capsys.readouterr().err
