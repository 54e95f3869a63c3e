"""Figures of the one-file edge executable. Prints one JSON line per run.

    python benchmarks/executable.py [dist/actorq] [--runs 3] [--idle 5]

Each run copies the executable into a fresh empty folder and starts ``actorq serve`` there with
an empty environment, then reports:
  - ``start_to_health_s``: from exec to the first 200 of ``GET /health`` (polled every 5 ms);
    this includes unpacking the bundle to /tmp, which the one-file bootloader does every start;
  - ``rss_mib``: VmRSS of the process running Python (the bootloader's child) and of the
    bootloader itself, ``--idle`` seconds after /health answered, with no task submitted;
and the run's first line carries ``size_mib``, the executable's size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def one_run(executable: Path, idle: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        box = Path(folder)
        shutil.copy2(executable, box / "actorq")
        port = free_port()
        started = time.perf_counter()
        proc = subprocess.Popen(
            ["./actorq", "serve", "--port", str(port)],
            cwd=box, env={}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while not healthy(f"http://127.0.0.1:{port}/health"):
                if proc.poll() is not None or time.perf_counter() - started > 60:
                    raise RuntimeError("actorq serve did not answer /health")
                time.sleep(0.005)
            to_health = time.perf_counter() - started
            time.sleep(idle)
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            python = int(children[0]) if children else proc.pid
            return {
                "start_to_health_s": round(to_health, 3),
                "rss_mib": rss_mib(python),
                "bootloader_rss_mib": rss_mib(proc.pid) if python != proc.pid else 0.0,
            }
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("executable", nargs="?", default="dist/actorq", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before RSS")
    args = parser.parse_args()
    size = round(args.executable.stat().st_size / 2**20, 1)
    for run in range(1, args.runs + 1):
        figures = one_run(args.executable.resolve(), args.idle)
        print(json.dumps({"run": run, "size_mib": size, **figures}), flush=True)


if __name__ == "__main__":
    main()
