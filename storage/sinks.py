"""Push channels behind one small interface: `PushSink.send(device, payload)`.

- TablePushSink (the default) keeps each push as a row of `sent_pushes` that developers and tests
  read.
- HttpPushSink POSTs the payload as JSON to the device's endpoint, Web Push style (`TTL` and
  `Urgency` headers): a 2xx is done; 404 or 410 means the subscription is gone and the device is
  forgotten; 408, 429, 5xx and network errors are retried with exponential back-off (honouring
  Retry-After); any other answer, or the last failed attempt, leaves a row in `push_dead_letters`.

E-mail goes through storage.email's EmailSink (SMTP or the `sent_emails` table). A sink never
raises for a failed delivery: a notification is committed before it is pushed, and a push
service being down is no reason to redo it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Protocol

import aiohttp
import asyncpg

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

    async def send(self, device: Device, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "TTL": str(self.ttl), "Urgency": "normal"}
        error = ""
        attempts = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
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
