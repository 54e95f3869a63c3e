"""Real `actorq` processes for tests: start one, wait until it answers, talk to it, kill it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One `actorq serve` (or `actorq worker`) process, its log in ``cwd``."""

    def __init__(self, db: Path | str, cwd: Path, *extra: str) -> None:
        url = db if isinstance(db, str) else f"sqlite:///{db}"
        self._spawn(cwd, "serve", "--database-url", url, *extra)

    @classmethod
    def command(
        cls, cwd: Path, cmd: str, node: str, *extra: str, poll_seconds: float = 0.2
    ) -> Server:
        server = cls.__new__(cls)
        server._spawn(cwd, cmd, "--node", node, *extra, poll_seconds=poll_seconds)
        return server

    def _spawn(self, cwd: Path, cmd: str, *args: str, poll_seconds: float = 0.2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"{cmd}-{self.port}.log"
        http = ["--port", str(self.port)] if cmd == "serve" else []
        argv = [sys.executable, "-m", "actorq", cmd, *http, *args]
        env = {**os.environ, "PYTHONPATH": str(cwd), "ACTORQ_POLL_SECONDS": str(poll_seconds)}
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=log)

    async def ready(self, timeout: float = 20.0) -> None:
        await until_ready(self.proc, self.url, self.log, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _text_of(log: Path) -> str:
    return log.read_text()  # once, as the test fails: no loop to keep responsive


async def until_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    """Await a process's API answering ``/ready``; fail at once, with its log, if it exits."""

    async def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {_text_of(log)}")
        try:
            async with aiohttp.ClientSession() as s, s.get(f"{url}/ready") as r:
                return r.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await until(up, timeout)


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    """Await a condition of another process, checking every 50 ms, failing after timeout."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - another process: nothing to await
            await asyncio.sleep(0.05)


async def api(method: str, url: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body) as r:
        assert r.status < 300, await r.text()
        return await r.json()
