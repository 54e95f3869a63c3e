"""The command line fails the way its help promises: one line on stderr, a documented exit code.

Bad and unreachable databases, output cut short by ``head``, flags shown where they apply,
and an in-memory SQLite database (works for ``serve``, refused where it cannot work).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import Server, api, until

from actorq.cli import FAILED, PIPE_CLOSED, UNAVAILABLE, USAGE, build_parser, main
from actorq.journal import journal_from_url
from actorq.journal.base import Submit
from actorq.model import NewTask

SECRET = "s3cret-pw"

# Every subcommand that opens the database, as argv before the flags.
COMMANDS = [
    ["serve", "--port", "0"],
    ["worker"],
    ["submit", "echo"],
    ["migrate"],
    ["journal", "replay"],
    ["journal", "verify"],
    ["journal", "export"],
    ["journal", "rebuild"],
]


def actorq(*argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m actorq ARGV`` as a user runs it; stopped after 60 s whatever happens."""
    return subprocess.run(
        [sys.executable, "-m", "actorq", *argv], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **env}, timeout=60, check=False,
    )  # fmt: skip


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_one_line(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("actorq: "), stderr
    assert SECRET not in stderr
    for needle in needles:
        assert needle in lines[0], stderr


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mysql://root@db/actorq", "unsupported database URL"),
        ("sqlite:/actorq.db", "malformed database URL"),
        ("postgresql//db/actorq", "malformed database URL"),
        ("sqlite://", "names no file"),
        (f"postgresql://me:{SECRET}@127.0.0.1:notaport/db", "Port"),
        ("postgresql://postgres@127.0.0.1/postgres?schema=not-an-identifier", "schema"),
    ],
)
def test_a_malformed_database_url_is_one_line_and_exit_2(
    url: str, needle: str, tmp_path: Path
) -> None:
    done = actorq("migrate", "--database-url", url, cwd=tmp_path)
    assert done.returncode == USAGE
    assert_one_line(done.stderr, needle)
    assert not list(tmp_path.iterdir()), "nothing was created"


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: "-".join(argv[:2]))
def test_every_command_refuses_a_bad_url_in_one_line(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--database-url", "mysql://x"]) == USAGE
    assert_one_line(capsys.readouterr().err, "unsupported database URL 'mysql://x'")


def test_a_postgres_that_is_down_is_exit_3_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://me:{SECRET}@127.0.0.1:{closed_port()}/actorq"
    done = actorq("journal", "export", "--database-url", url, cwd=tmp_path,
                  ACTORQ_CONNECT_TIMEOUT="2")  # fmt: skip
    assert done.returncode == UNAVAILABLE
    assert_one_line(done.stderr, "cannot reach PostgreSQL", "me:***@127.0.0.1", "refused")
    assert done.stdout == ""


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: "-".join(argv[:2]))
def test_every_command_says_the_database_is_down_with_exit_3(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://me:{SECRET}@127.0.0.1:{closed_port()}/actorq"
    assert main([*argv, "--database-url", url]) == UNAVAILABLE
    assert_one_line(capsys.readouterr().err, "cannot reach PostgreSQL")


@pytest.mark.postgres
def test_a_postgres_that_refuses_us_is_exit_3(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    no_such_db = postgres_url.replace("/postgres?", "/actorq_no_such_database?")
    assert no_such_db != postgres_url
    assert main(["migrate", "--database-url", no_such_db]) == UNAVAILABLE
    assert_one_line(capsys.readouterr().err, "actorq_no_such_database")


def test_sqlite_in_a_missing_directory_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/missing/actorq.db"
    assert main(["submit", "echo", "--database-url", url]) == UNAVAILABLE
    assert_one_line(capsys.readouterr().err, "does not exist")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert main(["migrate", "--database-url", f"sqlite:///{not_a_dir}/actorq.db"]) == UNAVAILABLE
    assert_one_line(capsys.readouterr().err, "is not a directory")


def test_sqlite_in_a_read_only_directory_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # root may write anywhere on an ordinary file system, but not into /proc.
    folder = Path("/proc") if os.geteuid() == 0 else tmp_path / "ro"
    if folder != Path("/proc"):
        folder.mkdir(mode=0o500)
    assert main(["migrate", "--database-url", f"sqlite:///{folder}/actorq.db"]) == UNAVAILABLE
    assert_one_line(capsys.readouterr().err, "actorq.db")


def test_bad_payload_json_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/actorq.db"
    done = actorq("submit", "echo", "--payload", "{not json", "--database-url", url, cwd=tmp_path)
    assert done.returncode == USAGE
    assert_one_line(done.stderr, "--payload is not valid JSON")


def test_an_unknown_task_type_is_exit_2_and_points_at_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", "nope", "--database-url", f"sqlite:///{tmp_path}/a.db"]) == USAGE
    assert_one_line(capsys.readouterr().err, "'nope'", "--app")


def test_export_into_head_ends_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/actorq.db"

    async def fill() -> None:  # well beyond what a pipe buffers
        journal = journal_from_url(url)
        await journal.open()
        tasks = [NewTask(type="echo", payload="x" * 500) for _ in range(1000)]
        await journal.run([Submit(tasks, time.time(), "test")])
        await journal.close()

    asyncio.run(fill())
    argv = [sys.executable, "-m", "actorq", "journal", "export", "--database-url", url]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = json.loads(proc.stdout.readline())
        proc.stdout.close()  # what `head -1` does after its line
        stderr = proc.stderr.read().decode()
        assert proc.wait(60) == PIPE_CLOSED
    assert first["seq"] == 1
    assert stderr == "", "no traceback, nothing to say"


def test_each_subcommand_shows_only_its_own_flags() -> None:
    parser = build_parser()

    def flags(*argv: str) -> set[str]:
        sub = parser
        for name in argv:
            action = next(a for a in sub._actions if a.dest in ("cmd", "journal_cmd"))
            sub = action.choices[name]  # type: ignore[index]
        return {s for a in sub._actions for s in a.option_strings}

    node = {"--concurrency", "--lease-seconds", "--shutdown-grace", "--queues", "--node"}
    assert not node & flags("submit")
    assert node <= flags("serve")
    assert node <= flags("worker")
    assert {"--host", "--port"} <= flags("serve")
    assert not {"--host", "--port"} & flags("worker")
    for argv in (["serve"], ["worker"], ["submit"], ["migrate"], *[
        ["journal", j] for j in ("replay", "verify", "export", "rebuild")
    ]):  # fmt: skip
        assert {"--database-url", "--log-level"} <= flags(*argv), argv
        assert "--payload" not in flags(*argv) or argv == ["submit"]


def test_submit_help_lacks_node_flags_and_the_main_help_lists_exit_codes(tmp_path: Path) -> None:
    submit = actorq("submit", "--help", cwd=tmp_path)
    assert submit.returncode == 0
    assert "--concurrency" not in submit.stdout
    assert "--priority" in submit.stdout
    top = actorq("--help", cwd=tmp_path)
    assert "exit codes:" in top.stdout
    for code in (FAILED, USAGE, UNAVAILABLE, PIPE_CLOSED):
        assert f"\n  {code} " in top.stdout


def test_log_level_works_before_and_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/actorq.db"
    assert main(["--log-level", "LOUD", "migrate", "--database-url", url]) == USAGE
    assert "LOUD" in capsys.readouterr().err
    assert main(["migrate", "--database-url", url, "--log-level", "LOUD"]) == USAGE
    assert "LOUD" in capsys.readouterr().err
    assert main(["journal", "verify", "--log-level", "warning", "--database-url", url]) == 0


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://:memory:"])
@pytest.mark.parametrize("argv", COMMANDS[1:], ids=lambda argv: "-".join(argv[:2]))
def test_memory_database_is_refused_where_it_cannot_work(
    argv: list[str], url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--database-url", url]) == USAGE
    assert_one_line(capsys.readouterr().err, "in-memory", "only `actorq serve`")


@pytest.mark.slow
async def test_serve_on_a_memory_database_runs_a_task_and_says_it_is_not_durable(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = Server("sqlite:///:memory:", tmp_path)
    servers.append(server)
    await server.ready()
    created = await api("POST", f"{server.url}/api/v1/tasks",
                        {"type": "echo", "payload": {"hello": "memory"}})  # fmt: skip
    url = f"{server.url}/api/v1/tasks/{created['id']}"

    async def succeeded() -> bool:
        return bool((await api("GET", url))["state"] == "succeeded")

    await until(succeeded, 20)
    assert (await api("GET", url))["result"] == {"hello": "memory"}
    assert "nothing is durable" in server.log.read_text()
    assert not [p for p in os.listdir(tmp_path) if ".db" in p], "no file was written"
