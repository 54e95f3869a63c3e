"""Do readers that never read slow the node? Prints one JSON line per run.

    python benchmarks/stalled_clients.py [--clients 200] [--runs 3] [--database-url URL]

Each run, on a fresh database and a node serving HTTP on a local port, twice: with no stream
reader, then with ``--clients`` SSE readers that open ``GET /api/v1/events`` and never read a
byte (plain sockets: they cost the machine nothing themselves). Measured each time:

- ``drain_s``: 5,050 no-op tasks submitted over HTTP (5 batches of 1,000, then 50 one by one)
  until the last one's ``succeeded`` event is committed;
- ``batch_submit_ms``: the slowest of the five 1,000-task batch POSTs.

- ``cpu_s``: the CPU time the process (node and harness) spent on that, a steadier figure than
  the wall clock on a loaded machine.

The line gives both, and ``ratio`` = with readers / without (the target: within 1.10), and
``cpu_ratio`` the same for CPU time. A third case, ``reading``, has the same number of readers
that do read (in a process of their own): delivering the events costs the node that much in
any case, and ``stalled_vs_reading`` (drain) and ``batch_stalled_vs_reading`` (the slowest
batch) say what readers that stop reading add to it (1.0: nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import tempfile
import time
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import build_app, fresh_url

from actorq.http.app import make_app

BATCHES, BATCH, SINGLES = 5, 1000, 50
TOTAL = BATCHES * BATCH + SINGLES


async def stalled_readers(port: int, n: int) -> list[socket.socket]:
    """``n`` SSE requests whose answers nobody ever reads."""
    request = b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        await loop.sock_connect(s, ("127.0.0.1", port))
        await loop.sock_sendall(s, request)
        socks.append(s)
    return socks


# Readers that do read, in a process of their own (so their reading costs this one nothing):
# the same events reach them, and what that costs the node is the price of delivering them at
# all. ``stalled`` measured against ``reading`` is what a reader that stops reading adds.
_READERS = """
import asyncio, sys
REQUEST = (b"GET /api/v1/events HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n"
           b"Accept: text/event-stream\\r\\n\\r\\n")
async def read(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    while await reader.read(65536):
        pass
async def main(port, n):
    readers = [asyncio.ensure_future(read(port)) for _ in range(n)]
    await asyncio.gather(*readers, return_exceptions=True)
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


async def reading_readers(port: int, n: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-c", _READERS, str(port), str(n))


async def one(url: str, clients: int, concurrency: int, reading: bool = False) -> dict[str, Any]:
    app, _ = build_app(url, concurrency)
    async with app:
        runtime = await app.start()
        runner = web.AppRunner(make_app(runtime), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        socks = [] if reading else await stalled_readers(port, clients)
        readers = await reading_readers(port, clients) if reading else None
        try:
            async with aiohttp.ClientSession() as session:
                # Every reader subscribed before the clock starts.
                while await runtime.live_subscribers() < clients:
                    await asyncio.sleep(0.05)
                async with runtime.live_events(size=TOTAL * 8) as feed:
                    t0, c0 = time.perf_counter(), time.process_time()
                    times: list[float] = []
                    tasks_url = f"http://127.0.0.1:{port}/api/v1/tasks"
                    for _ in range(BATCHES):
                        b0 = time.perf_counter()
                        async with session.post(tasks_url, json=[{"type": "noop"}] * BATCH) as r:
                            if r.status != 201:
                                raise RuntimeError(await r.text())
                        times.append(time.perf_counter() - b0)
                    for _ in range(SINGLES):
                        async with session.post(tasks_url, json={"type": "noop"}) as r:
                            if r.status != 201:
                                raise RuntimeError(await r.text())
                    done = 0
                    while done < TOTAL:
                        item = await asyncio.wait_for(feed.get(), 120)
                        if item["kind"] == "succeeded":
                            done += 1
                        elif item["kind"] == "lagged":
                            raise RuntimeError("the benchmark's own feed lagged")
                    drain = time.perf_counter() - t0
                    cpu = time.process_time() - c0
                    readers_left = await runtime.live_subscribers() - 1
        finally:
            for s in socks:
                s.close()
            if readers is not None:
                readers.kill()
                await readers.wait()
            await runner.cleanup()
    return {
        "drain_s": round(drain, 3),
        "cpu_s": round(cpu, 3),
        "batch_submit_ms": round(max(times) * 1000, 1),
        "batches_ms": [round(t * 1000, 1) for t in times],
        "readers_still_subscribed": readers_left,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--database-url", default=os.environ.get("ACTORQ_BENCH_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.runs):
            out: dict[str, Any] = {"tasks": TOTAL, "clients": args.clients}
            cases = (("none", 0, False), ("stalled", args.clients, False),
                     ("reading", args.clients, True))  # fmt: skip
            for label, clients, reading in cases:
                url, drop = fresh_url(args.database_url, workdir)
                try:
                    out[label] = await one(url, clients, args.concurrency, reading)
                finally:
                    await drop()
            out["ratio"] = round(out["stalled"]["drain_s"] / out["none"]["drain_s"], 3)
            out["cpu_ratio"] = round(out["stalled"]["cpu_s"] / out["none"]["cpu_s"], 3)
            out["batch_ratio"] = round(
                out["stalled"]["batch_submit_ms"] / max(out["none"]["batch_submit_ms"], 0.1), 3
            )
            # What stopping to read adds over reading: 1.0 = nothing.
            for key, field in (("stalled_vs_reading", "drain_s"),
                               ("batch_stalled_vs_reading", "batch_submit_ms")):  # fmt: skip
                out[key] = round(out["stalled"][field] / max(out["reading"][field], 0.001), 3)
            out["backend"] = url.split(":", 1)[0]
            out["python"] = platform.python_version()
            out["cpus"] = os.cpu_count()
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
