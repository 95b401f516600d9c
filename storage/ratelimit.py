"""Fixed-window rate limits in Redis, checked in one round trip with the cached auth states."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS[1]: the window counter; KEYS[2..]: cached states that must all be "1" to allow the request.
# ARGV[1]: the window in milliseconds. Returns {count, ms left in the window, state}: state 0 all
# allowed, 1 one refused, 2 none refused but one not cached (the caller asks the truth).
_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
local state = 0
if #KEYS > 1 then
    local values = redis.call('MGET', unpack(KEYS, 2))
    for i = 1, #KEYS - 1 do
        if values[i] == false then
            state = 2
        elseif values[i] ~= '1' then
            return {count, ttl, 1}
        end
    end
end
return {count, ttl, state}
"""


@dataclass(frozen=True)
class Hit:
    """One request counted against a limit."""

    count: int
    reset_ms: int
    refused: bool
    unknown: bool = False  # a state was not cached: neither allowed nor refused yet

    def remaining(self, limit: int) -> int:
        return max(limit - self.count, 0)


class RateLimiter:
    """Counts requests per key and window; the script is loaded once and called by hash."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_SCRIPT)

    async def hit(self, key: str, window_seconds: int, markers: tuple[str, ...] = ()) -> Hit:
        """Count one request; also report whether the cached states refuse it, or are missing."""
        count, ttl, state = await self._script(keys=[key, *markers], args=[window_seconds * 1000])
        return Hit(int(count), int(ttl), int(state) == 1, int(state) == 2)


def user_key(user_id: int, window: str) -> str:
    """A user's counter for a window name (shares the user's hash slot with their auth markers)."""
    return f"rl:{{{user_id}}}:{window}"


def address_key(scope: str, address: str) -> str:
    """A client address's counter for a scope, e.g. login."""
    return f"rl:{scope}:{address}"
