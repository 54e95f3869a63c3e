"""Typed keys of the aiohttp application state."""

from __future__ import annotations

import asyncio

from aiohttp import web

from actorq.auth import Keyring
from actorq.http.auth import Tickets
from actorq.runtime import Runtime

RUNTIME = web.AppKey("runtime", Runtime)
KEYRING = web.AppKey("keyring", Keyring)
"""This node's copy of the tokens table (see actorq.auth)."""
SHUTDOWN = web.AppKey("shutdown", asyncio.Event)
"""Set when the server stops: long-lived responses (the event stream) end on it."""
TICKETS = web.AppKey("tickets", Tickets)
"""Stream tickets this node issued (see actorq.http.auth.Tickets)."""
