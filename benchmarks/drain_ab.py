"""The in-process drain of two (or more) source trees, in alternating subprocesses.

    python benchmarks/drain_ab.py --variant /work/wt-base:asyncio --variant .:uvloop \
        --variant .:asyncio [--n 5000] [--pairs 5] [--concurrency 10] [--database-url URL]

Each variant is ``TREE:LOOP``: a source tree of actorq (put first on ``sys.path`` of its
subprocess) and the event loop its subprocess runs (``asyncio`` or ``uvloop``; ``LOOP@S``
also sets the interpreter's thread switch interval to S seconds, default 0.005). The variants
run one after another, round after round (A, B, C, A, B, C, ...), so that whatever else loads
the machine falls on all of them alike. Each run, on a fresh database: N no-op tasks are
enqueued in bulk by a node that claims nothing, then a node with C workers drains them, as
``benchmarks/throughput.py``'s drain phase does (that tree's own ``build_app``): the rate from
the node's start to the last ``succeeded`` event, and the CPU time the process spent on it per
task, in all and per thread (the main thread, and each other thread by its name).

One JSON line per run, then one summary line per variant: medians, their ratios to the
first variant's, and the median of each round's ratio to the first variant's run of that
round (``paired_ratio_*``, the steadier figure when other work loads the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

BULK = 1000


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each live thread of this process, by native id."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_names() -> dict[int, str]:
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    names[threading.main_thread().native_id or 0] = "main"
    return names


async def child_run(tree: str, n: int, concurrency: int, base_url: str | None) -> dict[str, Any]:
    import throughput  # the tree's own (put first on sys.path by child())

    with tempfile.TemporaryDirectory() as workdir:
        url, drop = throughput.fresh_url(base_url, workdir)
        try:
            filler, _ = throughput.build_app(url, 1, queues=("nothing",))
            async with filler:
                await filler.start()
                for start in range(0, n, BULK):
                    await filler.enqueue_many([{"type": "noop"}] * min(BULK, n - start))

            app, _ = throughput.build_app(url, concurrency)
            async with app:
                cpu0, threads0 = time.process_time(), thread_cpu()
                t0 = time.perf_counter()
                runtime = await app.start()
                async with runtime.live_events(size=n * 4) as feed:
                    done = (await runtime.stats())["tasks"]["succeeded"]
                    while done < n:
                        item = await asyncio.wait_for(feed.get(), 60)
                        if item["kind"] == "succeeded":
                            done += 1
                        elif item["kind"] == "lagged":
                            raise RuntimeError("the benchmark's event feed lagged")
                elapsed = time.perf_counter() - t0
                cpu, threads1, names = time.process_time() - cpu0, thread_cpu(), thread_names()
        finally:
            await drop()
    per_thread: dict[str, float] = {}
    for tid, seconds in threads1.items():
        name = re.sub(r"_\d+$", "", names.get(tid, "unnamed"))  # a pool's thread: name_0
        spent = (seconds - threads0.get(tid, 0.0)) / n * 1e6
        per_thread[name] = round(per_thread.get(name, 0.0) + spent, 1)
    return {
        "rate_per_s": round(n / elapsed, 1),
        "cpu_us_per_task": round(cpu / n * 1e6, 1),
        "thread_cpu_us_per_task": per_thread,
    }


def child(args: argparse.Namespace) -> None:
    tree = os.path.abspath(args.child)
    sys.path[:0] = [tree, os.path.join(tree, "benchmarks")]
    loop, _, switch = args.loop.partition("@")
    if switch:  # LOOP@SECONDS: the interpreter's thread switch interval (an experiment)
        sys.setswitchinterval(float(switch))
    if loop == "uvloop":
        import uvloop

        factory: Any = uvloop.new_event_loop
    else:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(child_run(tree, args.n, args.concurrency, args.database_url))
    import actorq

    if not os.path.abspath(actorq.__file__).startswith(tree):
        raise RuntimeError(f"actorq came from {actorq.__file__}, not from {tree}")
    print(json.dumps(result), flush=True)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def git_rev(tree: str) -> str:
    out = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip() or "unknown"


def parent(args: argparse.Namespace) -> None:
    variants = [tuple(v.rsplit(":", 1)) for v in args.variant]
    runs: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(variants))}
    revs = {tree: git_rev(tree) for tree, _ in variants}
    for round_no in range(args.pairs):
        for i, (tree, loop) in enumerate(variants):
            argv = [sys.executable, os.path.abspath(__file__), "--child", tree, "--loop", loop,
                    "--n", str(args.n), "--concurrency", str(args.concurrency)]  # fmt: skip
            if args.database_url:
                argv += ["--database-url", args.database_url]
            out = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/tmp")
            if out.returncode != 0:
                raise RuntimeError(f"{tree}:{loop} failed:\n{out.stderr}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[i].append(result)
            backend = "postgresql" if args.database_url else "sqlite"
            line = {"bench": "drain_ab", "round": round_no, "tree": tree, "git": revs[tree],
                    "loop": loop, "n": args.n, "concurrency": args.concurrency,
                    "backend": backend, **result}  # fmt: skip
            print(json.dumps(line), flush=True)
    first: dict[str, float] = {}
    for i, (tree, loop) in enumerate(variants):
        summary: dict[str, Any] = {"bench": "drain_ab_summary", "tree": tree, "git": revs[tree],
                                   "loop": loop, "runs": len(runs[i])}  # fmt: skip
        for key in ("rate_per_s", "cpu_us_per_task"):
            summary[f"median_{key}"] = _median([r[key] for r in runs[i]])
        threads = {name for r in runs[i] for name in r["thread_cpu_us_per_task"]}
        summary["median_thread_cpu_us_per_task"] = {
            name: _median([r["thread_cpu_us_per_task"].get(name, 0.0) for r in runs[i]])
            for name in sorted(threads)
        }
        if i == 0:
            first = {k: summary[f"median_{k}"] for k in ("rate_per_s", "cpu_us_per_task")}
        else:
            for key, value in first.items():
                summary[f"ratio_{key}"] = round(summary[f"median_{key}"] / value, 3)
                # Each run against the first variant's of the same round (run moments apart,
                # under the same load): steadier than the medians' ratio on a busy machine.
                paired = [r[key] / f[key] for r, f in zip(runs[i], runs[0], strict=True)]
                summary[f"paired_ratio_{key}"] = round(statistics.median(paired), 3)
        print(json.dumps(summary), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", action="append", default=[], help="TREE:LOOP")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=5, help="rounds over all variants")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--database-url", help="PostgreSQL base URL (default: SQLite files)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        if len(args.variant) < 2:
            parser.error("give at least two --variant TREE:LOOP")
        parent(args)


if __name__ == "__main__":
    main()
