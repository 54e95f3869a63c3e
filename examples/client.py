"""Use actorq from another program over HTTP: submit a task, wait for it, print what happened.

SyncClient needs no event loop (it runs its own in a thread); in async code use actorq.Client,
which has the same methods as coroutines. Start a node first, then run this:

    actorq serve --port 8080 &
    python examples/client.py http://127.0.0.1:8080

ACTORQ_TOKEN, if set, is sent as the bearer token.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

import actorq


def when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%H:%M:%S.%f")


def main(url: str) -> int:
    with actorq.SyncClient(url, token=os.environ.get("ACTORQ_TOKEN")) as client:
        print(f"node {client.health()['node']} at {url}")
        task = client.submit("echo", {"greeting": "hello from another process"}, priority=5)
        print(f"submitted {task.type} task {task.id}: {task.state}")

        done = client.wait(task.id, timeout=30)
        print(f"{done.state} after {done.attempt} attempt(s), result: {done.result}")
        for event in client.history(task.id):
            print(f"  {when(event.at)}  {event.kind:<10} {event.worker or event.node}")

        try:
            client.cancel(task.id)
        except actorq.InvalidTransition as exc:  # the node's own exception classes
            print(f"cancel refused: {exc}")
    return 0 if done.state is actorq.TaskState.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"))
