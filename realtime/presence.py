"""Presence in Redis: per user a sorted set of live connections scored by when each expires.

A user is online while any connection's score lies in the future; heartbeats push the scores
forward (throttled by the gateway), so a process that dies takes its users offline within the TTL
without anyone cleaning up. `last_seen` is written when the last connection goes. Connect and
disconnect are one script call each and say whether the user came online or went offline, so only
real transitions are published.
"""

from __future__ import annotations

import time
from typing import Iterable

from redis.asyncio import Redis

# KEYS[1] connections, ARGV: conn id, expiry ms, now ms, key ttl s. Returns live connections before.
_CONNECT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return before
"""

# KEYS[1] connections, KEYS[2] last seen; ARGV: conn id, now ms, last-seen ttl s. Returns live left.
_DISCONNECT = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then
    redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
end
return left
"""

LAST_SEEN_TTL = 90 * 24 * 3600


def connections_key(user_id: int) -> str:
    return f"presence:{{{user_id}}}:conns"


def last_seen_key(user_id: int) -> str:
    return f"presence:{{{user_id}}}:seen"


def now_ms() -> int:
    return int(time.time() * 1000)


class PresenceStore:
    """Presence keys: verbs in pairs (connect/disconnect), refresh in bulk, read in bulk."""

    def __init__(self, redis: Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl
        self._connect = redis.register_script(_CONNECT)
        self._disconnect = redis.register_script(_DISCONNECT)

    async def connect(self, user_id: int, conn_id: str) -> bool:
        """Record a live connection; True if the user just came online."""
        now = now_ms()
        before = await self._connect(keys=[connections_key(user_id)],
                                     args=[conn_id, now + self.ttl * 1000, now, self.ttl])
        return int(before) == 0

    async def disconnect(self, user_id: int, conn_id: str) -> int | None:
        """Drop a connection; the last-seen time in ms if the user just went offline, else None."""
        now = now_ms()
        left = await self._disconnect(keys=[connections_key(user_id), last_seen_key(user_id)],
                                      args=[conn_id, now, LAST_SEEN_TTL])
        return now if int(left) == 0 else None

    def refresh(self, pipe, user_id: int, conn_id: str) -> None:
        """Queue, on a pipeline, pushing a live connection's expiry forward."""
        key = connections_key(user_id)
        pipe.zadd(key, {conn_id: now_ms() + self.ttl * 1000}, xx=True)
        pipe.expire(key, self.ttl)

    async def lookup(self, user_ids: Iterable[int]) -> dict[int, tuple[bool, int | None]]:
        """(online, last seen ms) of each user, in one pipeline."""
        ids = list(user_ids)
        if not ids:
            return {}
        now = now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            for uid in ids:
                pipe.zcount(connections_key(uid), now, "+inf")
                pipe.get(last_seen_key(uid))
            replies = await pipe.execute()
        result = {}
        for i, uid in enumerate(ids):
            live, seen = replies[2 * i], replies[2 * i + 1]
            result[uid] = (int(live) > 0, int(seen) if seen is not None else None)
        return result

    async def count_connections(self) -> int:
        """Live sockets across every process (a SCAN of the connection sets: for the admin
        overview, not for hot paths)."""
        now, total = now_ms(), 0
        keys = [key async for key in self.redis.scan_iter(match="presence:*:conns", count=1000)]
        for start in range(0, len(keys), 1000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys[start:start + 1000]:
                    pipe.zcount(key, now, "+inf")
                total += sum(int(n) for n in await pipe.execute())
        return total
