"""How soon a revoked token stops working on the other nodes of a cluster. One JSON line.

    python benchmarks/revoke.py [--database-url postgresql://...] [--samples 10]

Two ``actorq serve`` processes share one database (PostgreSQL by default: a cluster). Each
sample creates an admin token through node A, checks that node B accepts it, revokes it
through node A and then asks node B every 10 ms until it answers 401: the time from the
revoke's answer to B's first refusal. Node A refuses at once; B within its keyring's refresh
(``ACTORQ_AUTH_REFRESH``, default 1 s), so the figure lies between 0 and that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid

import aiohttp
from throughput import free_port, fresh_url, git_rev, percentiles, until_ready


async def status(session: aiohttp.ClientSession, method: str, url: str, secret: str) -> int:
    async with session.request(method, url, headers={"Authorization": f"Bearer {secret}"}) as r:
        return r.status


async def sample(session: aiohttp.ClientSession, a: str, b: str, root: str) -> float:
    body = {"name": f"probe-{uuid.uuid4().hex[:8]}", "scope": "read"}
    headers = {"Authorization": f"Bearer {root}"}
    async with session.post(f"{a}/api/v1/tokens", json=body, headers=headers) as resp:
        secret = (await resp.json())["secret"]
    async with asyncio.timeout(10):
        while await status(session, "GET", f"{b}/api/v1/stats", secret) != 200:
            await asyncio.sleep(0.01)
    assert await status(session, "DELETE", f"{a}/api/v1/tokens/{body['name']}", root) == 200
    revoked = time.monotonic()
    async with asyncio.timeout(10):
        while await status(session, "GET", f"{b}/api/v1/stats", secret) != 401:
            await asyncio.sleep(0.01)
    return time.monotonic() - revoked


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        url, drop = fresh_url(args.database_url, workdir)
        made = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "actorq", "token", "create", "root", "--scope", "admin",
             "--database-url", url], capture_output=True, text=True, check=True,
        )  # fmt: skip
        root = json.loads(made.stdout)["secret"]
        procs, urls = [], []
        for name in ("a", "b"):
            port = free_port()
            argv = [sys.executable, "-m", "actorq", "serve", "--node", name, "--port", str(port),
                    "--database-url", url]  # fmt: skip
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))  # fmt: skip
            urls.append(f"http://127.0.0.1:{port}")
        try:
            await asyncio.gather(*(until_ready(u) for u in urls))
            async with aiohttp.ClientSession() as session:
                seconds = [await sample(session, urls[0], urls[1], root)
                           for _ in range(args.samples)]  # fmt: skip
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
            await drop()
    print(json.dumps({
        "bench": "revoke", "rev": git_rev(), "backend": url.split(":", 1)[0],
        "samples": args.samples, "refresh_s": float(os.environ.get("ACTORQ_AUTH_REFRESH", 1.0)),
        "revoke_seen_ms": percentiles(seconds), "max_ms": round(max(seconds) * 1000, 3),
        "python": platform.python_version(),
    }))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url",
                        default="postgresql://postgres@127.0.0.1:5432/postgres")  # fmt: skip
    parser.add_argument("--samples", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
