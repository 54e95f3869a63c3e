"""Typed keys of the aiohttp application state."""

from __future__ import annotations

import asyncio

from aiohttp import web

from actorq.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
SHUTDOWN = web.AppKey("shutdown", asyncio.Event)
"""Set when the server stops: long-lived responses (the event stream) end on it."""
