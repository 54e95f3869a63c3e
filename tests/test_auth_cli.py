"""Tokens from the command line, the refusal to serve a public address without them, the
CLI's actor, and tokens across a cluster of real processes on one PostgreSQL."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from procs import Server, free_port, until

from actorq.cli import main
from actorq.cli.base import USAGE
from actorq.journal import journal_from_url


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_token_create_list_revoke_on_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    made = run_cli(capsys, "token", "create", "deploy", "--scope", "submit",
                   "--database-url", url)  # fmt: skip
    assert made["secret"].startswith("aq_")
    assert made["scope"] == "submit"
    assert made["created_by"] == f"cli:{getpass.getuser()}@{socket.gethostname()}"
    listed = run_cli(capsys, "token", "list", "--database-url", url)
    assert [t["name"] for t in listed] == ["deploy"]
    assert "secret" not in listed[0]
    assert made["secret"] not in (tmp_path / "t.db").read_bytes().decode("latin-1")
    revoked = run_cli(capsys, "token", "revoke", "deploy", "--database-url", url)
    assert revoked["revoked_at"] is not None
    # a name stays taken
    assert main(["token", "create", "deploy", "--database-url", url]) != 0


def test_cli_writes_on_the_database_name_the_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    task = run_cli(capsys, "submit", "echo", "--database-url", url)

    async def history() -> list[Any]:
        journal = journal_from_url(url)
        await journal.open()
        try:
            return await journal.history(task["id"])
        finally:
            await journal.close()

    (submitted,) = asyncio.run(history())
    assert submitted.actor == f"cli:{getpass.getuser()}@{socket.gethostname()}"
    me = submitted.actor
    assert [t["id"] for t in run_cli(capsys, "tasks", "list", "--by", me,
                                     "--database-url", url)["tasks"]] == [task["id"]]  # fmt: skip
    assert run_cli(capsys, "tasks", "list", "--by", "x", "--database-url", url)["tasks"] == []


def test_serve_on_a_public_address_without_tokens_refuses_to_start(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "actorq", "serve", "--host", "0.0.0.0",
            "--port", str(free_port()), "--database-url", f"sqlite:///{tmp_path}/p.db"]  # fmt: skip
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == USAGE
    assert "actorq token create" in done.stderr
    assert "--no-auth" in done.stderr


async def test_serve_with_no_auth_starts_and_warns(tmp_path: Path, servers: list[Server]) -> None:
    server = Server(tmp_path / "n.db", tmp_path, "--host", "0.0.0.0", "--no-auth")
    servers.append(server)
    await server.ready()
    assert "auth is off" in server.log.read_text()


async def _status(url: str, secret: str | None, method: str = "GET", body: Any = None) -> int:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body,
                                                       headers=headers) as r:  # fmt: skip
        return r.status


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_token_works_on_every_node_and_a_revoke_reaches_them_all(
    postgres_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    a = Server.command(tmp_path, "serve", "a", "--database-url", postgres_url)
    b = Server.command(tmp_path, "serve", "b", "--database-url", postgres_url)
    servers += [a, b]
    await asyncio.gather(a.ready(), b.ready())
    # created through node a's API (open: no token yet), used on node b
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{a.url}/api/v1/tokens", json={"name": "root", "scope": "admin"}) as r,
    ):
        assert r.status == 201
        root = (await r.json())["secret"]

    async def b_refuses_anonymous() -> bool:
        return await _status(f"{b.url}/api/v1/tasks", None) == 401

    await until(b_refuses_anonymous, 5)
    assert await _status(f"{b.url}/api/v1/tasks", root) == 200
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{b.url}/api/v1/tasks",
            json={"type": "echo"},
            headers={"Authorization": f"Bearer {root}"},
        ) as r,
    ):
        task = await r.json()
    # revoked on node a: node b refuses it within its refresh (1 s)
    assert await _status(f"{a.url}/api/v1/tokens/root", root, "DELETE") == 200
    assert await _status(f"{a.url}/api/v1/tasks", root) == 401  # a: at once
    revoked_at = time.monotonic()

    async def b_refuses_root() -> bool:
        return await _status(f"{b.url}/api/v1/tasks", root) == 401

    await until(b_refuses_root, 5)
    assert time.monotonic() - revoked_at < 3.0
    # the submission made on b names the token
    journal = journal_from_url(postgres_url)
    await journal.open()
    try:
        history = await journal.history(task["id"])
    finally:
        await journal.close()
    assert history[0].actor == "root"
    assert history[0].node == "b"


def test_export_shows_and_filters_by_actor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/e.db"
    first = run_cli(capsys, "submit", "echo", "--database-url", url)
    assert main(["journal", "export", "--database-url", url]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    me = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    assert json.loads(line)["actor"] == me
    assert json.loads(line)["task_id"] == first["id"]
    assert main(["journal", "export", "--by", "someone-else", "--database-url", url]) == 0
    assert capsys.readouterr().out == ""
    assert main(["journal", "export", "--by", me, "--database-url", url]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


async def test_the_cli_sends_its_token_with_url(tmp_path: Path, servers: list[Server]) -> None:
    db = tmp_path / "u.db"
    url = f"sqlite:///{db}"
    made = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "actorq", "token", "create", "viewer", "--database-url", url],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    secret = json.loads(made.stdout)["secret"]
    server = Server(db, tmp_path)
    servers.append(server)
    await server.ready()

    def stats(*extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "actorq", "stats", "--url", server.url, *extra]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    refused = await asyncio.to_thread(stats)
    assert refused.returncode == 1
    assert "needs a token" in refused.stderr
    assert (await asyncio.to_thread(stats, "--token", secret)).returncode == 0


async def test_serve_on_a_public_address_starts_once_a_token_exists(
    tmp_path: Path, servers: list[Server]
) -> None:
    db = tmp_path / "pub.db"
    await asyncio.to_thread(main, ["token", "create", "root", "--scope", "admin",
                                   "--database-url", f"sqlite:///{db}"])  # fmt: skip
    server = Server(db, tmp_path, "--host", "0.0.0.0")
    servers.append(server)
    await server.ready()
    assert await _status(f"{server.url}/api/v1/tasks", None) == 401
