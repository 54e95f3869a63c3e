"""The one-file edge executable, as a user runs it: copied alone into an empty folder, started
with an empty environment whose PATH holds no Python, killed with SIGKILL and restarted.

The session fixture builds it with scripts/build-executable (about a minute on two cores).
Where PyInstaller cannot be installed these tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from procs import api, free_port, until, until_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def executable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/actorq built from this source tree into a temporary folder."""
    work = tmp_path_factory.mktemp("executable")
    venv = work / "venv"
    # PyInstaller first, on its own: the one step a machine without the registry cannot do.
    made = subprocess.run(
        f"{sys.executable} -m venv {venv} && {venv}/bin/pip install -q 'pyinstaller>=6.10,<7'",
        shell=True, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        reason = f"PyInstaller cannot be installed here: {made.stderr.strip()[-500:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    env = {**os.environ, "BUILD_VENV": str(venv), "PYTHON": sys.executable}
    argv = [ROOT / "scripts" / "build-executable", "--dist", work / "dist", "--work", work / "b"]
    built = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    return work / "dist" / "actorq"


@pytest.fixture
def box(executable: Path, tmp_path: Path) -> Path:
    """An empty folder holding only a copy of the executable, as on an edge box."""
    folder = tmp_path / "box"
    folder.mkdir()
    shutil.copy2(executable, folder / "actorq")
    return folder


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """No variables but a PATH on which no Python can be found, and TMPDIR: the executable
    unpacks itself there, and a SIGKILLed run would leave its folder in the machine's /tmp."""
    no_python, unpacked = tmp_path / "bin", tmp_path / "tmp"
    no_python.mkdir()
    unpacked.mkdir()
    assert shutil.which("python3", path=str(no_python)) is None
    assert shutil.which("python", path=str(no_python)) is None
    return {"PATH": str(no_python), "TMPDIR": str(unpacked)}


class Node:
    """One `serve` process of the executable (or of another command line), logging to cwd."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [*argv, "serve", "--port", str(self.port), *extra],
                cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def healthy(self, timeout: float = 30.0) -> None:
        await until_ready(self.proc, self.url, self.log, timeout)

    def python_process(self) -> int:
        """The pid that runs Python: the one-file bootloader's only child."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        (child,) = children.split()
        return int(child)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    except FileNotFoundError:
        return True


async def states(url: str, ids: list[str]) -> dict[str, str]:
    async with aiohttp.ClientSession() as s:
        found = {}
        for task_id in ids:
            async with s.get(f"{url}/api/v1/tasks/{task_id}") as r:
                assert r.status == 200, f"{task_id}: {await r.text()}"
                found[task_id] = (await r.json())["state"]
        return found


def run(box: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["./actorq", *args], cwd=box, env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


async def test_executable_serves_the_queue_and_survives_sigkill_with_nothing_lost(
    box: Path, bare_env: dict[str, str], nodes: list[Node]
) -> None:
    flags = ("--concurrency", "4", "--lease-seconds", "1.5")
    first = Node(["./actorq"], box, bare_env, *flags)
    nodes.append(first)
    await first.healthy()
    python = first.python_process()
    assert os.readlink(f"/proc/{python}/exe") == str(box / "actorq"), "no other Python runs it"
    assert (box / "actorq.db").exists(), "SQLite in ./actorq.db by default"

    async with aiohttp.ClientSession() as s:
        for path, kind in (("/", "text/html"), ("/static/app.js", "text/javascript")):
            async with s.get(first.url + path) as r:
                assert (r.status, r.content_type) == (200, kind), path
        async with s.get(f"{first.url}/openapi.json") as r:
            assert r.status == 200
    echo = await api("POST", f"{first.url}/api/v1/tasks", {"type": "echo", "payload": {"a": 1}})

    async def echoed() -> bool:
        task = await api("GET", f"{first.url}/api/v1/tasks/{echo['id']}")
        return bool(task["state"] == "succeeded" and task["result"] == {"a": 1})

    await until(echoed, 20)

    long = [{"type": "sleep", "payload": {"seconds": 0.5}, "priority": 9} for _ in range(4)]
    quick = [{"type": "sleep", "payload": {"seconds": 0.05}} for _ in range(60)]
    later = [{"type": "echo", "payload": i, "delay": 1.0} for i in range(10)]
    ids = [echo["id"]] + [
        t["id"]
        for batch in (long, quick, later)
        for t in (await api("POST", f"{first.url}/api/v1/tasks", batch))["tasks"]
    ]

    async def mid_run() -> bool:
        tasks = (await api("GET", f"{first.url}/api/v1/stats"))["tasks"]
        return bool(tasks["running"] > 0 and tasks["succeeded"] >= 5)

    await until(mid_run, 20)
    first.proc.send_signal(signal.SIGKILL)  # the pid a user or a supervisor knows
    first.proc.wait(10)

    async def python_gone() -> bool:
        return gone(python)

    await until(python_gone, 10)  # it dies with the bootloader: no orphan holds the database

    second = Node(["./actorq"], box, bare_env, *flags)
    nodes.append(second)
    await second.healthy()

    async def all_finished() -> bool:
        found = await states(second.url, ids)
        return set(found.values()) <= {"succeeded", "failed", "dead", "cancelled"}

    await until(all_finished, 60)
    assert set((await states(second.url, ids)).values()) == {"succeeded"}
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(30) == 0, second.log.read_text()
    assert "uvloop event loop" in second.log.read_text(), "the bundle carries uvloop"

    verified = run(box, bare_env, "journal", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    exported = run(box, bare_env, "journal", "export", "-o", "journal.jsonl")
    assert exported.returncode == 0, exported.stderr
    events = [json.loads(line) for line in (box / "journal.jsonl").read_text().splitlines()]
    assert {e["task_id"] for e in events} >= set(ids)
    submitted = run(box, bare_env, "submit", "echo", "--payload", '{"b": 2}')
    assert submitted.returncode == 0, submitted.stderr
    assert '"state": "queued"' in submitted.stdout
    migrated = run(box, bare_env, "migrate")
    assert (migrated.returncode, migrated.stdout.strip()) == (0, "schema is up to date")
    helped = run(box, bare_env, "--help")
    assert helped.returncode == 0
    assert "serve" in helped.stdout
    assert "journal" in helped.stdout


HANDLERS = textwrap.dedent(
    '''
    """Handlers for the edge executable: the standard library and actorq only."""
    import csv
    import hashlib
    import io
    import statistics

    import actorq
    from rounding import rounded  # a plain file beside this one

    app = actorq.App()


    @app.task("digest")
    def digest(payload):
        rows = list(csv.reader(io.StringIO(payload)))
        numbers = [float(cell) for row in rows for cell in row]
        return {
            "sha256": hashlib.sha256(payload.encode()).hexdigest()[:12],
            "mean": rounded(statistics.mean(numbers)),
        }


    @app.task("shout")
    async def shout(payload):
        return payload.upper()
    '''
)


@pytest.mark.parametrize("how", ["executable", "python -m actorq"])
async def test_app_from_a_plain_handlers_file(
    how: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    bare_env: dict[str, str],
    nodes: list[Node],
) -> None:
    if how == "executable":
        box: Path = request.getfixturevalue("box")
        argv = ["./actorq"]
    else:  # the normal install: the same file, outside the import path too
        box, argv = tmp_path, [sys.executable, "-m", "actorq"]
    handlers = box / "handlers"
    handlers.mkdir()
    (handlers / "tasks.py").write_text(HANDLERS)
    (handlers / "rounding.py").write_text("def rounded(x):\n    return round(x, 2)\n")
    node = Node(argv, box, bare_env, "--app", "handlers/tasks.py:app")
    nodes.append(node)
    await node.healthy()

    types = await api("GET", f"{node.url}/api/v1/types")
    assert {t["name"] for t in types["types"]} == {"digest", "shout"}
    numbers = "1,2\n3,4\n"
    batch = [{"type": "digest", "payload": numbers}, {"type": "shout", "payload": "hi"}]
    ids = [t["id"] for t in (await api("POST", f"{node.url}/api/v1/tasks", batch))["tasks"]]

    async def done() -> bool:
        return set((await states(node.url, ids)).values()) == {"succeeded"}

    await until(done, 20)
    results: list[Any] = [
        (await api("GET", f"{node.url}/api/v1/tasks/{task_id}"))["result"] for task_id in ids
    ]
    digest = hashlib.sha256(numbers.encode()).hexdigest()[:12]
    assert results == [{"sha256": digest, "mean": 2.5}, "HI"]
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(30) == 0, node.log.read_text()
