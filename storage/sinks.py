"""Push channels behind one small interface: `PushSink.send(device, payload)`.

- TablePushSink (the default) keeps each push as a row of `sent_pushes` that developers and tests
  read.
- HttpPushSink POSTs the payload as JSON to the device's endpoint, Web Push style (`TTL` and
  `Urgency` headers): a 2xx is done; 404 or 410 means the subscription is gone and the device is
  forgotten; 408, 429, 5xx and network errors are retried with exponential back-off (honouring
  Retry-After); any other answer, or the last failed attempt, leaves a row in `push_dead_letters`.
  Endpoints are clients' input: one on a loopback, private, link-local or otherwise non-public
  address is refused (the name is resolved, the addresses checked, and only checked ones dialled,
  so a name cannot be rebound between the check and the connection).

E-mail goes through storage.email's EmailSink (SMTP or the `sent_emails` table). A sink never
raises for a failed delivery: a notification is committed before it is pushed, and a push
service being down is no reason to redo it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Protocol
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from storage.notifications import forget_device

log = logging.getLogger("glint.push")

Device = Mapping[str, Any]  # a push_devices row: id, user_id, endpoint, keys, platform


class PushSink(Protocol):
    """Where a push to one device goes."""

    async def send(self, device: Device, payload: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class TablePushSink:
    """Keeps each push as a row of `sent_pushes`: the development and test sink."""

    pool: asyncpg.Pool

    async def send(self, device: Device, payload: dict[str, Any]) -> None:
        await self.pool.execute(
            "INSERT INTO sent_pushes (user_id, device_id, payload) VALUES ($1, $2, $3)",
            device["user_id"], device["id"], payload,
        )


class PrivateTarget(OSError):
    """A push endpoint that resolves to an address glint does not call."""


def is_public(address: str) -> bool:
    """Is this an address on the public internet (not loopback, private, link-local, multicast,
    reserved or unspecified, nor an IPv4 one of those mapped into IPv6)?"""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class PublicResolver(AbstractResolver):
    """Resolves as usual, then keeps only public addresses (none left: PrivateTarget)."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = [r for r in await self._resolver.resolve(host, port, family) if is_public(r["host"])]
        if not found:
            raise PrivateTarget(f"{host} has no public address")
        return found

    async def close(self) -> None:
        await self._resolver.close()


def check_endpoint(url: str) -> None:
    """Refuse an endpoint that is not http(s), or names a non-public address literally (names are
    checked by PublicResolver when dialled)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PrivateTarget(f"not an http(s) URL: {url[:100]}")
    try:
        literal = ipaddress.ip_address(parts.hostname.strip("[]"))
    except ValueError:
        if parts.hostname.rstrip(".").lower() == "localhost" or parts.hostname.endswith(".localhost"):
            raise PrivateTarget("localhost") from None
        return
    if not is_public(str(literal)):
        raise PrivateTarget(f"{literal} is not a public address")


RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
GONE = frozenset({404, 410})


@dataclass(frozen=True)
class HttpPushSink:
    """A Web Push-style POST to each device's endpoint, with retries and a dead letter."""

    pool: asyncpg.Pool
    timeout: float = 5.0
    max_attempts: int = 4
    retry_base: float = 0.5
    ttl: int = 24 * 3600
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    allow_private: bool = False  # tests push to a server on loopback; never in a deployment

    async def send(self, device: Device, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "TTL": str(self.ttl), "Urgency": "normal"}
        error = ""
        attempts = 0
        if not self.allow_private:
            try:
                check_endpoint(device["endpoint"])
            except PrivateTarget as exc:
                await self._dead_letter(device, payload, 0, f"refused: {exc}")
                return
        connector = None if self.allow_private else aiohttp.TCPConnector(resolver=PublicResolver())
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                         connector=connector) as session:
            for attempts in range(1, self.max_attempts + 1):
                delay = self.retry_base * 2 ** (attempts - 1)
                try:
                    async with session.post(device["endpoint"], data=body, headers=headers) as response:
                        status = response.status
                        if 200 <= status < 300:
                            return
                        if status in GONE:
                            await forget_device(self.pool, device["id"])
                            log.info("push endpoint of device %s is gone (%d): forgotten", device["id"], status)
                            return
                        error = f"HTTP {status}: {(await response.text())[:500]}"
                        if status not in RETRYABLE:
                            break
                        delay = max(delay, _retry_after(response.headers.get("Retry-After")))
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                    error = repr(exc)
                if attempts < self.max_attempts:
                    await self.sleep(delay)
        await self._dead_letter(device, payload, attempts, error)

    async def _dead_letter(self, device: Device, payload: dict[str, Any], attempts: int, error: str) -> None:
        log.warning("push to device %s failed after %d attempts: %s", device["id"], attempts, error)
        await self.pool.execute(
            "INSERT INTO push_dead_letters (user_id, device_id, endpoint, payload, attempts, error)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            device["user_id"], device["id"], device["endpoint"], payload, attempts, error[:2000],
        )


def _retry_after(value: str | None, cap: float = 30.0) -> float:
    """Seconds from a Retry-After header (its delta-seconds form), capped; 0 if absent or a date."""
    try:
        return min(float(value or 0), cap)
    except ValueError:
        return 0.0


async def sent_pushes(conn: asyncpg.Pool | asyncpg.Connection, user_id: int) -> list[asyncpg.Record]:
    """What the table sink holds for a user, oldest first."""
    return await conn.fetch("SELECT device_id, payload, created_at FROM sent_pushes WHERE user_id = $1 ORDER BY id",
                            user_id)


async def dead_letters(conn: asyncpg.Pool | asyncpg.Connection, user_id: int) -> list[asyncpg.Record]:
    """The pushes to a user the HTTP sink gave up on, oldest first."""
    return await conn.fetch(
        "SELECT device_id, endpoint, payload, attempts, error FROM push_dead_letters WHERE user_id = $1 ORDER BY id",
        user_id,
    )
