"""schemathesis against a live node, on both backends: whatever a client sends, within the
document or outside it, the node never answers a 5xx; its statuses, headers and bodies are the
ones the OpenAPI document gives for that operation; what the document refuses the node refuses
(negative_data_rejection), and a method a path does not take is a 405 with Allow.

The node runs in a thread with its own event loop: schemathesis calls it synchronously, over
real HTTP on a free port.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from nodes import Gates, make_registry, node_config
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from actorq.http.app import make_app
from actorq.runtime import Runtime

DOCUMENT = Path(__file__).parent.parent / "actorq" / "http" / "static" / "openapi.json"
SPEC = json.loads(DOCUMENT.read_text())
schema = schemathesis.openapi.from_dict(SPEC).exclude(path="/api/v1/events")  # endless stream
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=25,
    deterministic=True,
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    unsupported_method,
    negative_data_rejection,
]


class LiveNode:
    """A started node and its HTTP server, on a loop of their own in another thread."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._up = threading.Event()
        self._failure: BaseException | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._run, name="live-node", daemon=True)

    def __enter__(self) -> LiveNode:
        self._thread.start()
        self._up.wait(30)
        if self._failure is not None or not self.url:
            raise RuntimeError("the node did not start") from self._failure
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._up.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        runtime = Runtime(node_config(self._database_url), make_registry(Gates()))
        await runtime.start()
        runner = web.AppRunner(make_app(runtime), access_log=None)
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
            self._up.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await runtime.stop()


@pytest.fixture
def live_url(database_url: str) -> Iterator[str]:
    with LiveNode(database_url) as node:
        yield node.url


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_keeps_to_its_document(case: Any, live_url: str) -> None:
    case.call_and_validate(base_url=live_url, checks=CHECKS, timeout=10)
