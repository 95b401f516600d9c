"""Fixed-window rate limits in Redis, checked in one round trip with the access-token markers."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS[1]: the window counter; KEYS[2..]: markers whose existence refuses the request.
# ARGV[1]: the window in milliseconds. Returns {count, ms left in the window, markers found}.
_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
local refused = 0
if #KEYS > 1 then
    refused = redis.call('EXISTS', unpack(KEYS, 2))
end
return {count, ttl, refused}
"""


@dataclass(frozen=True)
class Hit:
    """One request counted against a limit."""

    count: int
    reset_ms: int
    refused: bool

    def remaining(self, limit: int) -> int:
        return max(limit - self.count, 0)


class RateLimiter:
    """Counts requests per key and window; the script is loaded once and called by hash."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_SCRIPT)

    async def hit(self, key: str, window_seconds: int, markers: tuple[str, ...] = ()) -> Hit:
        """Count one request; also report whether any marker key exists."""
        count, ttl, refused = await self._script(keys=[key, *markers], args=[window_seconds * 1000])
        return Hit(int(count), int(ttl), bool(refused))


def user_key(user_id: int, window: str) -> str:
    """A user's counter for a window name (shares the user's hash slot with their auth markers)."""
    return f"rl:{{{user_id}}}:{window}"


def address_key(scope: str, address: str) -> str:
    """A client address's counter for a scope, e.g. login."""
    return f"rl:{scope}:{address}"
