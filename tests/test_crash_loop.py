"""Crash loop: thousands of tasks while nodes are SIGKILLed again and again at random moments.

Real `actorq` processes on a real database. The handlers write, before the journal knows
anything, when they start (with the attempt they were given) and when they end, to a file
opened with O_APPEND; a second type always fails, so some tasks die legitimately. Afterwards
the journal and that file must tell one story: every acknowledged task finished, an attempt is
spent only by a handler that started, a task is dead only after max_attempts started
attempts, and the journal replays to its projection.

What a kill may leave, reasoned out (the checks below hold exactly this much):
- A worker journals ``started`` beside its handler, so a handler may start and the process
  die before ``started`` commits: that run is not an attempt, and the next run gets the same
  attempt number again. So the handler's file may show an attempt more often than the
  journal, never an attempt beyond what the journal counted.
- The other way round, ``started`` may commit and the process die before the handler's first
  line runs. Such an attempt is spent, but only by a kill: it ends in a lease expiry, and no
  worker has more than one started attempt at a time, so a kill costs at most ``concurrency``
  attempts per node killed.
- An attempt with an outcome (succeeded, failed, dead-lettered for failing) was run by a
  handler, which wrote so before the outcome could be journaled.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import sys
import time
from pathlib import Path

import aiohttp
import attrs
import pytest
from procs import Server, api, until

import actorq.lifecycle as lifecycle
from actorq.journal import journal_from_url
from actorq.model import Event, EventKind, Task, TaskState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SEED = int(os.environ.get("ACTORQ_CRASH_SEED", "20261127"))
"""Chooses the kill moments and the task mix; every failure message names it."""

MAX_ATTEMPTS = 3
CONCURRENCY = 8
BATCH = 50
DOOMED_SHARE = 0.1  # of the tasks submitted, about this share always fails
LEASE = ("--lease-seconds", "2", "--concurrency", str(CONCURRENCY), "--app", "crashjobs:app")

HANDLERS = """
import asyncio
import os
import random

from actorq import App, RetryPolicy

app = App()
_log = os.open(LOG_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_pause = random.Random()


def _record(line):
    # One unbuffered write per line: in the file before the handler goes on, whatever kills
    # the process next, and never interleaved with another process's line.
    os.write(_log, (line + "\\n").encode())


@app.task("work", queue="crash", max_attempts=MAX_ATTEMPTS)
async def work(payload, ctx):
    _record(f"start {ctx.task_id} {ctx.attempt}")
    await asyncio.sleep(_pause.uniform(0.005, 0.04))  # a kill may land mid-handler
    _record(f"done {ctx.task_id}")
    return payload


@app.task("doomed", queue="crash", max_attempts=MAX_ATTEMPTS, retry=RetryPolicy(base=0.2))
async def doomed(payload, ctx):
    _record(f"start {ctx.task_id} {ctx.attempt}")
    await asyncio.sleep(_pause.uniform(0.005, 0.04))
    _record(f"done {ctx.task_id}")
    raise RuntimeError("doomed by design")
"""


def write_handlers(tmp_path: Path) -> Path:
    log = tmp_path / "handlers.log"
    source = HANDLERS.replace("LOG_PATH", repr(str(log)))
    (tmp_path / "crashjobs.py").write_text(source.replace("MAX_ATTEMPTS", str(MAX_ATTEMPTS)))
    return log


@attrs.define
class Submitter:
    """Posts batches of tasks to a node's API; an id is acknowledged when its POST answered
    2xx. A POST cut short by a kill acknowledges nothing (its tasks may still exist)."""

    rng: random.Random
    remaining: int
    acked: dict[str, str] = attrs.field(factory=dict)  # id -> type
    refused: collections.Counter[str] = attrs.field(factory=collections.Counter)

    async def post(self, session: aiohttp.ClientSession, url: str) -> None:
        size = min(BATCH, self.remaining)
        types = ["doomed" if self.rng.random() < DOOMED_SHARE else "work" for _ in range(size)]
        body = [{"type": t, "payload": {"n": i}} for i, t in enumerate(types)]
        self.remaining -= size
        try:
            async with session.post(f"{url}/api/v1/tasks", json=body) as r:
                if r.status >= 300:
                    self.refused[str(r.status)] += 1
                    return
                created = (await r.json())["tasks"]
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.refused[type(exc).__name__] += 1
            return
        except asyncio.CancelledError:
            self.refused["cut by a kill"] += 1
            raise
        self.acked.update((t["id"], t["type"]) for t in created)

    async def run(self, url: str, pause: float = 0.0) -> None:
        """Post until nothing remains (or until cancelled), ``pause`` seconds between POSTs."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while self.remaining > 0:
                await self.post(session, url)
                await asyncio.sleep(pause)


def sigkill(node: Server) -> None:
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(10)


async def sigterm(node: Server) -> None:
    node.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        while node.proc.poll() is None:  # noqa: ASYNC110 - another process: nothing to await
            await asyncio.sleep(0.05)
    assert node.proc.returncode == 0, node.log.read_text()[-3000:]


async def worker_ready(node: Server, name: str) -> None:
    async def started() -> bool:
        if node.proc.poll() is not None:
            raise AssertionError(f"worker {name} exited: {node.log.read_text()[-3000:]}")
        return f"node {name} started" in node.log.read_text()

    await until(started, 30)


async def drained(url: str, timeout: float = 60.0) -> None:
    async def nothing_live() -> bool:
        tasks: dict[str, int] = (await api("GET", f"{url}/api/v1/stats"))["tasks"]
        return sum(tasks.get(s, 0) for s in ("scheduled", "queued", "claimed", "running")) == 0

    await until(nothing_live, timeout)


async def stop_posting(posting: asyncio.Task[None]) -> None:
    posting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await posting


# -- the sqlite crash loop ----------------------------------------------------------------


async def test_sqlite_node_sigkilled_again_and_again_loses_no_task_and_spends_no_attempt(
    tmp_path: Path, servers: list[Server]
) -> None:
    rng = random.Random(SEED)
    log = write_handlers(tmp_path)
    db = f"sqlite:///{tmp_path}/crash.db"
    common = ("--database-url", db, *LEASE)
    kills, total = 15, 3000
    submitter = Submitter(random.Random(SEED + 1), remaining=0)
    left, per_life = total, total // 8  # ahead of the workers: kills land mid-run
    began = time.monotonic()
    for _ in range(kills):
        # One name across restarts, as an operator's service would run it.
        node = Server.command(tmp_path, "serve", "solo", *common)
        servers.append(node)
        await node.ready()
        submitter.remaining = min(per_life, left)
        left -= submitter.remaining
        posting = asyncio.create_task(submitter.run(node.url, pause=0.1))
        await asyncio.sleep(rng.uniform(0.3, 2.5))  # a random moment to die
        sigkill(node)
        await stop_posting(posting)
        left += submitter.remaining  # what it had no time to post
    submitter.remaining = left
    last = Server.command(tmp_path, "serve", "solo", *common)
    servers.append(last)
    await last.ready()
    await submitter.run(last.url)
    await drained(last.url)
    await sigterm(last)
    await check(db, log, submitter, total=total, kills=kills, began=began, runners=("solo/",))


# -- the postgres crash loop --------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_workers_sigkilled_in_turn_lose_no_task_and_spend_no_attempt(
    postgres_url: str, tmp_path: Path, servers: list[Server]
) -> None:
    rng = random.Random(SEED)
    log = write_handlers(tmp_path)
    common = ("--database-url", postgres_url, *LEASE)
    began = time.monotonic()
    # The API node knows the types (so it accepts them while no worker is up) but works only
    # on a queue nobody uses: the killed workers run everything.
    serve = Server.command(tmp_path, "serve", "api", *common, "--queues", "idle")
    servers.append(serve)
    await serve.ready()

    def start_worker(name: str) -> Server:
        node = Server.command(tmp_path, "worker", name, *common)
        servers.append(node)
        return node

    workers = [start_worker("w0"), start_worker("w1")]
    for i, node in enumerate(workers):
        await worker_ready(node, f"w{i}")
    kills, total = 12, 4000
    submitter = Submitter(random.Random(SEED + 1), remaining=total)
    posting = asyncio.create_task(submitter.run(serve.url, pause=0.1))
    try:
        for k in range(kills):
            await asyncio.sleep(rng.uniform(0.3, 2.5))  # a random moment to die
            i = k % 2
            sigkill(workers[i])
            workers[i] = start_worker(f"w{i}")
            await worker_ready(workers[i], f"w{i}")
        async with asyncio.timeout(60):
            await asyncio.shield(posting)
    finally:
        await stop_posting(posting)
    await drained(serve.url)
    for node in [*workers, serve]:
        await sigterm(node)
    await check(
        postgres_url, log, submitter, total=total, kills=kills, began=began, runners=("w0/", "w1/")
    )


# -- what must hold afterwards ------------------------------------------------------------


@attrs.frozen
class Attempt:
    """One started attempt as the journal has it, and the event that ended it."""

    number: int
    ended: Event | None


def attempts_of(history: list[Event]) -> list[Attempt]:
    out: list[Attempt] = []
    number, current = 0, None
    for e in history:
        if e.kind is EventKind.STARTED:
            number += 1
            current = number
        elif lifecycle.carries_start(e):  # a run shorter than the start window: one event
            number += 1
            out.append(Attempt(number, e))
        elif current is not None and e.kind in _ENDS_A_RUN:
            out.append(Attempt(current, e))
            if e.kind is EventKind.RELEASED:
                number -= 1  # a stopping node gives the attempt back
            current = None
    if current is not None:
        out.append(Attempt(current, None))
    return out


_ENDS_A_RUN = {
    EventKind.SUCCEEDED,
    EventKind.FAILED,
    EventKind.TIMED_OUT,
    EventKind.DEAD_LETTERED,
    EventKind.LEASE_EXPIRED,
    EventKind.RELEASED,
}


def starts(e: Event) -> bool:
    """Whether ``e`` records a handler's start: ``started``, or an outcome carrying it."""
    return e.kind is EventKind.STARTED or lifecycle.carries_start(e)


def killed(a: Attempt) -> bool:
    """Whether the attempt ended because its node went away (no outcome from a handler)."""
    if a.ended is None:
        return False
    if a.ended.kind is EventKind.LEASE_EXPIRED:
        return True
    return a.ended.kind is EventKind.DEAD_LETTERED and a.ended.data["reason"] == "lease_expired"


@attrs.define
class HandlerLog:
    starts: dict[str, list[int]] = attrs.field(factory=lambda: collections.defaultdict(list))
    done: collections.Counter[str] = attrs.field(factory=collections.Counter)

    @classmethod
    def read(cls, path: Path) -> HandlerLog:
        out = cls()
        for line in path.read_text().splitlines():
            match line.split():
                case ["start", task_id, attempt]:
                    out.starts[task_id].append(int(attempt))
                case ["done", task_id]:
                    out.done[task_id] += 1
                case _:
                    raise AssertionError(f"a torn line in the handlers' log: {line!r}")
        return out


async def check(
    url: str,
    log: Path,
    submitter: Submitter,
    *,
    total: int,
    kills: int,
    began: float,
    runners: tuple[str, ...],
) -> None:
    """Everything the journal and the handlers' log must agree on after the crash loop."""
    journal = journal_from_url(url)
    await journal.open()
    try:
        tasks = {t.id: t async for t in journal.tasks()}
        histories: dict[str, list[Event]] = collections.defaultdict(list)
        async for event in journal.events():
            histories[event.task_id].append(event)
    finally:
        await journal.close()
    handlers = HandlerLog.read(log)
    verify = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "actorq", "journal", "verify", "--database-url", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        verified = (await verify.communicate())[0].decode()

    problems: list[str] = []
    for task_id, task in tasks.items():
        problems += task_problems(task, histories[task_id], handlers)
    strangers = {
        e.worker
        for h in histories.values()
        for e in h
        if starts(e) and not (e.worker or "").startswith(runners)
    }
    if strangers:
        problems.append(f"handlers started on {sorted(map(str, strangers))}, not {runners}")
    missing = set(submitter.acked) - set(tasks)
    problems += [f"{tid}: acknowledged, not in the journal" for tid in sorted(missing)]
    if verify.returncode != 0:
        problems.append(f"journal verify exited {verify.returncode}: {verified}")
    lost_to_kills = [
        (tid, a.number) for tid in tasks for a in attempts_of(histories[tid]) if killed(a)
    ]
    bound = kills * CONCURRENCY  # one node per kill, one started attempt per worker
    if len(lost_to_kills) > bound:
        problems.append(f"{len(lost_to_kills)} attempts ended by a lease, more than {bound}")
    unseen = [(tid, n) for tid, n in lost_to_kills if n not in handlers.starts.get(tid, [])]
    hit_again = sorted(
        t for t, n in collections.Counter(t for t, _ in lost_to_kills).items() if n > 1
    )
    journaled = sum(starts(e) for h in histories.values() for e in h)
    handler_runs = sum(len(runs) for runs in handlers.starts.values())
    # At least once: a handler that ended, but whose run the journal never learned of.
    ran_twice = sum(n > 1 for tid, n in handlers.done.items() if tasks[tid].type == "work")

    states = collections.Counter(f"{t.type}:{t.state.value}" for t in tasks.values())
    summary = (
        f"seed {SEED} (ACTORQ_CRASH_SEED), {time.monotonic() - began:.0f}s: {len(tasks)} tasks,"
        f" {len(submitter.acked)} acknowledged, POSTs not acknowledged {dict(submitter.refused)};"
        f" states {dict(states)}; {kills} kills; attempts ended by a kill {len(lost_to_kills)}"
        f" ({len(unseen)} journaled as started before the handler ran: {unseen[:5]});"
        f" tasks hit by more than one kill {len(hit_again)}; handler runs {handler_runs},"
        f" journaled starts {journaled}; work tasks whose handler ended twice {ran_twice}"
    )
    print(summary)  # the numbers of a passing run, seen with -s
    shown = "\n".join(problems[:20])
    assert not problems, f"{summary}\n{len(problems)} problems:\n{shown}"
    assert len(submitter.acked) >= total // 2, f"too few submissions got through: {summary}"


def task_problems(task: Task, history: list[Event], handlers: HandlerLog) -> list[str]:
    """What is wrong with one task, given its journal history and what its handlers wrote."""
    tid, out = task.id, []
    attempts = attempts_of(history)
    started = sum(starts(e) for e in history)
    ran = handlers.starts.get(tid, [])
    expected = TaskState.SUCCEEDED if task.type == "work" else TaskState.DEAD
    if task.state is TaskState.DEAD and len(attempts) == task.max_attempts:
        # Killed mid-run max_attempts times: each run counted, as a started handler's does.
        expected = TaskState.DEAD if all(killed(a) for a in attempts) else expected
    if task.state is not expected:
        out.append(f"{task.type} task is {task.state.value}")
    if task.state is TaskState.DEAD and started != task.max_attempts:
        out.append(f"dead after {started} started attempts, not {task.max_attempts}")
    spent = given(attempts)
    if task.attempt != spent:
        out.append(f"attempt {task.attempt}, but {spent} started attempts were not given back")
    for a in attempts:
        if not killed(a) and a.ended is not None and a.number not in ran:
            out.append(f"attempt {a.number} ended {a.ended.kind.value} without a handler start")
    beyond = [n for n in ran if n > max(started, 1) or n < 1]
    if beyond:
        out.append(f"handlers ran attempts {beyond} of {started} journaled")
    if task.state is TaskState.SUCCEEDED and not handlers.done[tid]:
        out.append("succeeded without a handler that ended")
    if out:
        kinds = [f"{e.kind.value}@{e.worker}{_reason(e)}" for e in history]
        out = [f"{tid}: {'; '.join(out)} | history {kinds} | handler starts {ran}"]
    return out


def given(attempts: list[Attempt]) -> int:
    """The attempt a finished task shows: those started, less those a stopping node gave back."""
    if not attempts:
        return 0
    last = attempts[-1]
    released = last.ended is not None and last.ended.kind is EventKind.RELEASED
    return last.number - released


def _reason(e: Event) -> str:
    return f"({e.data.get('reason')})" if e.kind is EventKind.DEAD_LETTERED else ""
