"""Shared fixtures: a database per test on each backend, an open journal, and a running node.

Fixtures here are generic building blocks; a test module asks for the one it needs and gets a
real database: a SQLite file in ``tmp_path``, or a fresh schema in a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config
from procs import Server

from actorq.http.app import make_app
from actorq.journal import journal_from_url
from actorq.journal.base import Journal
from actorq.journal.postgres import split_url
from actorq.runtime import Runtime

T = TypeVar("T")

PG_DSN = os.environ.get("ACTORQ_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The PostgreSQL every Postgres test uses; each test gets a schema of its own in it."""


# -- databases ------------------------------------------------------------------------------


def run_aside(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a loop of its own, in another thread.

    Lets a plain (sync) fixture talk to PostgreSQL whether or not the test using it is async,
    without touching the test's event loop.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coro).result()


async def _pg_execute(sql: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def with_schema(dsn: str, schema: str) -> str:
    """``dsn`` with ``schema=NAME`` added to its query (how PostgresJournal takes a schema)."""
    parts = urllib.parse.urlsplit(dsn)
    query = [*urllib.parse.parse_qsl(parts.query), ("schema", schema)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL of PostgreSQL (``ACTORQ_TEST_PG_DSN``) that selects a fresh, empty schema.

    The schema is dropped after the test. Without a reachable server the test is skipped, or
    fails when ``ACTORQ_REQUIRE_PG=1`` (CI).
    """
    schema = f"actorq_test_{uuid.uuid4().hex[:16]}"
    try:
        run_aside(_pg_execute(f'CREATE SCHEMA "{schema}"'))
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL at {PG_DSN} is not reachable: {exc!r}"
        if os.environ.get("ACTORQ_REQUIRE_PG") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    yield with_schema(PG_DSN, schema)
    run_aside(_pg_execute(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test's PostgreSQL schema, to look past the journal."""
    dsn, schema = split_url(postgres_url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": str(schema)})
    yield conn
    await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database, once per backend: a SQLite file in ``tmp_path``, or a fresh
    PostgreSQL schema (see ``postgres_url``)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path}/actorq.db"


@pytest.fixture
async def journal(database_url: str) -> AsyncIterator[Journal]:
    """An open journal on ``database_url``, closed after the test."""
    journal = journal_from_url(database_url)
    await journal.open()
    yield journal
    await journal.close()


# -- a running node -------------------------------------------------------------------------


@pytest.fixture
def gates() -> Gates:
    return Gates()


async def _start(database_url: str, gates: Gates, **overrides: Any) -> Runtime:
    runtime = Runtime(node_config(database_url, **overrides), make_registry(gates))
    await runtime.start()
    return runtime


@pytest.fixture
async def node(database_url: str, gates: Gates) -> AsyncIterator[Runtime]:
    """A started node (4 workers) on the parametrized backend."""
    runtime = await _start(database_url, gates)
    yield runtime
    for name in list(gates.started):
        gates.open(name)  # let blocked handlers end so the node stops promptly
    await runtime.stop()


@pytest.fixture
async def single_worker_node(database_url: str, gates: Gates) -> AsyncIterator[Runtime]:
    runtime = await _start(database_url, gates, concurrency=1)
    yield runtime
    for name in list(gates.started):
        gates.open(name)
    await runtime.stop()


@pytest.fixture
async def client(node: Runtime, aiohttp_client: Any) -> TestClient:
    client: TestClient = await aiohttp_client(make_app(node))
    return client


@pytest.fixture
async def client_single(single_worker_node: Runtime, aiohttp_client: Any) -> TestClient:
    client: TestClient = await aiohttp_client(make_app(single_worker_node))
    return client


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Real ``actorq`` processes a test starts; those still running are stopped after it."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()
