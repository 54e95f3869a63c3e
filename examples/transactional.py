"""Enqueue inside your own PostgreSQL transaction: the task exists if and only if you commit.

A signup writes the user and enqueues the welcome email in one asyncpg transaction. Committed,
both exist and the task runs; rolled back, neither ever existed: no email for a user who is
not there, and no user without an email. Run it against a PostgreSQL::

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python transactional.py

``DATABASE_URL`` is your application's database; actorq's journal lives in the same one
(``ACTORQ_DATABASE_URL``, if set, may add ``?schema=NAME`` to keep actorq's tables apart).
The node runs in this process to keep the example in one file; ``actorq worker --app
transactional:app`` would run the tasks just as well.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncpg

import actorq

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

app = actorq.App(database_url=DATABASE_URL)  # ACTORQ_DATABASE_URL, when set, wins


@app.task("send_welcome_email")
async def send_welcome_email(payload: dict[str, Any]) -> str:
    return f"welcome, {payload['name']}"


class SignupRefused(Exception):
    """Raised inside the transaction to roll it back (a taken name, a failed check...)."""


async def signup(conn: asyncpg.Connection, name: str, *, refuse: bool = False) -> str:
    """Insert the user and enqueue their email in one transaction, which ``refuse`` rolls
    back at the last moment. Returns the id the task got either way."""
    task_id = ""
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO users (name) VALUES ($1)", name)
            task = await app.enqueue("send_welcome_email", {"name": name}, connection=conn)
            task_id = task.id
            if refuse:
                raise SignupRefused(name)
    except SignupRefused:
        pass
    return task_id


async def main() -> None:
    async with app:
        await app.start()  # a node in this process, to run the tasks
        conn = await asyncpg.connect(DATABASE_URL)
        try:
            # A temporary table stands in for your application's own tables.
            await conn.execute("CREATE TEMP TABLE users (name text PRIMARY KEY)")

            committed = await signup(conn, "ada")
            done = await app.wait_for(committed, timeout=30)
            print(f"committed: task {committed} {done.state}: {done.result}")

            rolled_back = await signup(conn, "bob", refuse=True)
            try:
                await app.get(rolled_back)
            except actorq.TaskNotFound:
                users = await conn.fetchval("SELECT count(*) FROM users WHERE name = 'bob'")
                print(f"rolled back: task {rolled_back} never existed, nor its user ({users})")
            else:
                raise SystemExit(f"rolled back: task {rolled_back} exists, which it must not")
        finally:
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
