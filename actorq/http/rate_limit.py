"""Per-client request rate limit (``ACTORQ_RATE_LIMIT``, e.g. ``200/s``): a token bucket per
client, that is per API token for a request that sends one, else per client address (so the
clients of one proxy or NAT address are told apart by their tokens); a request finding its
bucket empty answers 429 ``rate_limited`` with ``Retry-After``. ``/health`` and ``/ready`` are
exempt: probes must never be refused. The limit runs before authentication, so a refused
request costs nothing more; a token that turns out to be bad is refused there with 401.

Memory stays bounded whatever the number of clients: buckets are kept in least-recently-used
order and at most ``max_clients`` of them; a client forgotten comes back with a full bucket,
which is what an idle client's bucket would hold anyway after a while.
"""

from __future__ import annotations

import collections
import hashlib
import math
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from actorq.errors import RateLimited
from actorq.http.auth import bearer
from actorq.units import parse_rate

EXEMPT = frozenset({"/health", "/ready"})
MAX_CLIENTS = 10_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RateLimiter:
    """``limit`` requests per ``period`` seconds per client, in bursts of up to ``limit``."""

    def __init__(
        self,
        limit: int,
        period: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.limit = limit
        self.period = period
        self._rate = limit / period  # tokens per second
        self._clock = clock
        self._max = max_clients
        # client -> (tokens, when they were counted), least recently seen first
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    @classmethod
    def from_setting(cls, setting: str) -> RateLimiter:
        return cls(*parse_rate(setting, "ACTORQ_RATE_LIMIT"))

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str) -> None:
        """Spend one token of ``client``; ``RateLimited`` (with the wait) if none is left."""
        now = self._clock()
        tokens, then = self._buckets.pop(client, (float(self.limit), now))
        tokens = min(float(self.limit), tokens + (now - then) * self._rate)
        if tokens < 1.0:
            self._keep(client, tokens, now)
            raise RateLimited((1.0 - tokens) / self._rate)
        self._keep(client, tokens - 1.0, now)

    def _keep(self, client: str, tokens: float, now: float) -> None:
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


def client_of(request: web.Request) -> str:
    """Whose bucket a request spends: its token's (by a digest, never the secret itself), or
    its address's."""
    secret = bearer(request)
    if secret:
        return "token:" + hashlib.sha256(secret.encode()).hexdigest()[:32]
    return "address:" + (request.remote or "unknown")


def middleware(limiter: RateLimiter) -> Middleware:
    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in EXEMPT:
            try:
                limiter.take(client_of(request))
            except RateLimited as exc:
                body = {"error": {"code": exc.code, "message": str(exc), **exc.details()}}
                resp = web.json_response(body, status=429)
                resp.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
                return resp
        return await handler(request)

    return rate_limit
