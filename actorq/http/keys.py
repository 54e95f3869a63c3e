"""Typed keys of the aiohttp application state."""

from __future__ import annotations

from aiohttp import web

from actorq.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
