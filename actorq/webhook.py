"""The example ``webhook`` task type, fenced so that it cannot be used for request forgery.

Whoever may submit tasks decides the URL; without a fence the node would POST to its own API
or to any internal address and hand the answer back as the task's result. So a webhook only
reaches public (globally routable) addresses: loopback, link-local, private, shared (CGNAT),
multicast, unspecified and reserved ones are refused unless ``ACTORQ_WEBHOOK_ALLOW`` names them.

The check runs on the addresses the connection will use: a name is resolved once, by a
resolver that refuses it if *any* of its addresses is internal, and aiohttp then connects to
exactly those addresses (no second lookup to rebind). A literal address in the URL is checked
before the request. Redirects are not followed (a public server could point at an internal
one); proxies from the environment are not used. Answers are read up to ``MAX_ANSWER`` bytes,
within ``MAX_SECONDS`` in all.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from actorq.steering import Permanent

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_SECONDS = 10.0  # the whole call: connect, send, answer
MAX_ANSWER = 64 * 1024  # bytes of the answer read; a longer answer fails the task
_KEPT = 1000  # characters of the answer kept as the task's result


class WebhookFailure(Exception):
    """The endpoint answered, but not with success (retried, like any failure)."""


def parse_allow(entries: Sequence[str] | None) -> tuple[IPNetwork, ...]:
    """``ACTORQ_WEBHOOK_ALLOW``: addresses or networks (CIDR) a webhook may reach although
    they are internal."""
    networks = []
    for entry in entries or ():
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"ACTORQ_WEBHOOK_ALLOW: {entry!r} is not an address or network"
            ) from None
    return tuple(networks)


def refused(address: IPAddress, allow: Sequence[IPNetwork]) -> bool:
    """Whether a webhook may not reach ``address``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in network for network in allow):
        return False
    return not address.is_global or address.is_multicast


class FencedResolver(AbstractResolver):
    """Resolves as usual, then refuses a name if any address it has is refused."""

    def __init__(self, allow: Sequence[IPNetwork]) -> None:
        self._allow = allow
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for result in found:
            if refused(ipaddress.ip_address(result["host"]), self._allow):
                raise Permanent(
                    f"webhook refused: {host} resolves to {result['host']}, an internal "
                    "address (ACTORQ_WEBHOOK_ALLOW may allow it)"
                )
        return found

    async def close(self) -> None:
        await self._inner.close()


def _check_url(raw: Any, allow: Sequence[IPNetwork]) -> URL:
    try:
        url = URL(raw)
    except (TypeError, ValueError):
        raise Permanent(f"webhook refused: {raw!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise Permanent(f"webhook refused: {raw!r} is not an http(s) URL")
    try:
        literal = ipaddress.ip_address(url.host)
    except ValueError:
        return url  # a name: the resolver checks its addresses
    if refused(literal, allow):
        raise Permanent(
            f"webhook refused: {url.host} is an internal address (ACTORQ_WEBHOOK_ALLOW may "
            "allow it)"
        )
    return url


def make_webhook(allow: Sequence[IPNetwork] = ()) -> Any:
    """The handler: POSTs ``payload["body"]`` as JSON to ``payload["url"]``; a non-2xx answer
    fails the attempt, a refused address ends the task at once (``Permanent``)."""

    async def webhook(payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("url"), str):
            raise Permanent("webhook needs a payload {'url': ..., 'body': ...}")
        url = _check_url(payload["url"], allow)
        headers = payload.get("headers") or {}
        if not isinstance(headers, dict) or any(k.lower() == "host" for k in headers):
            raise Permanent("webhook headers must be an object, without Host")
        seconds = min(float(payload.get("timeout", MAX_SECONDS)), MAX_SECONDS)
        connector = aiohttp.TCPConnector(resolver=FencedResolver(allow), force_close=True)
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=seconds)
            ) as session,
            session.post(
                url, json=payload.get("body"), headers=headers, allow_redirects=False
            ) as resp,
        ):
            data = await resp.content.read(MAX_ANSWER + 1)
            if len(data) > MAX_ANSWER:
                raise WebhookFailure(f"webhook answer larger than {MAX_ANSWER} bytes")
            text = data.decode("utf-8", "replace")
            if resp.status >= 300:
                raise WebhookFailure(f"webhook answered {resp.status}: {text[:200]}")
            return {"status": resp.status, "body": text[:_KEPT]}

    return webhook
