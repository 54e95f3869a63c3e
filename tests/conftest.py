"""Shared fixtures: a database per test on each backend, and a running node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from nodes import Gates, make_registry, node_config

from actorq.http.app import make_app
from actorq.runtime import Runtime


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/actorq.db"


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
