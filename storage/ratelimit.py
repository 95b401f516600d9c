"""Fixed-window rate limits in Redis, checked in one round trip with the cached auth states."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.crc import key_slot

from storage.cluster import is_cluster

# KEYS[1]: the window counter; KEYS[2..n+1]: cached states that must all be "1" to allow the
# request; then a rider's keys. ARGV[1]: the window in milliseconds; ARGV[2]: n; then a rider's
# arguments. Returns {count, ms left in the window, state, the rider's reply}: state 0 all allowed,
# 1 one refused (the rider runs anyway, and authentication drops its reply with the request), 2
# none refused but one not cached (the caller asks the truth).
_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
local state = 0
local markers = tonumber(ARGV[2])
if markers > 0 then
    local values = redis.call('MGET', unpack(KEYS, 2, markers + 1))
    for i = 1, markers do
        if values[i] == false then
            state = 2
        elseif values[i] ~= '1' then
            return {count, ttl, 1}
        end
    end
end
local function ride(k, a)
%s
end
return {count, ttl, state, ride(markers + 2, 3)}
"""


# KEYS: window counters; ARGV[1]: the window in milliseconds, ARGV[i + 1]: the requests counted
# against KEYS[i]. Returns {count, ms left in the window} per key, flattened.
_COUNT_MANY = """
local out = {}
for i = 1, #KEYS do
    local count = redis.call('INCRBY', KEYS[i], ARGV[i + 1])
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then
        redis.call('PEXPIRE', KEYS[i], ARGV[1])
        ttl = tonumber(ARGV[1])
    end
    out[#out + 1] = count
    out[#out + 1] = ttl
end
return out
"""


@dataclass(frozen=True)
class Rider:
    """A read that rides in the rate limit's script call, so that a request's first read costs no
    round trip of its own. `lua` is the body of a Lua function(k, a) that reads KEYS[k..] (`keys`)
    and ARGV[a..] (`args`) and returns one reply; on a Redis Cluster the keys must share the
    counter's slot (a user's own keys, by their hash tag)."""

    lua: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Hit:
    """One request counted against a limit."""

    count: int
    reset_ms: int
    refused: bool
    unknown: bool = False  # a state was not cached: neither allowed nor refused yet
    ridden: Any = None  # the rider's reply

    def remaining(self, limit: int) -> int:
        return max(limit - self.count, 0)


class RateLimiter:
    """Counts requests per key and window; the script is loaded once and called by hash."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._scripts = {"return nil": redis.register_script(_SCRIPT % "return nil")}
        self._count_many = redis.register_script(_COUNT_MANY)
        self._pending: list[tuple[str, int, asyncio.Future]] = []  # (key, window ms, its Hit)
        self._counting: asyncio.Task | None = None

    async def hit(self, key: str, window_seconds: int, markers: tuple[str, ...] = (), rider: Rider | None = None) -> Hit:
        """Count one request; also report whether the cached states refuse it, or are missing, and
        run the rider's read unless they refuse it."""
        lua = "return nil" if rider is None else rider.lua
        script = self._scripts.get(lua)
        if script is None:  # one script per kind of rider, made on its first use
            script = self._scripts[lua] = self._redis.register_script(_SCRIPT % lua)
        keys, args = [key, *markers], [window_seconds * 1000, len(markers)]
        if rider is not None:
            keys += rider.keys
            args += rider.args
        reply = await script(keys=keys, args=args)
        state = int(reply[2])
        return Hit(int(reply[0]), int(reply[1]), state == 1, state == 2, reply[3] if len(reply) > 3 else None)


    async def count(self, key: str, window_seconds: int) -> Hit:
        """Count one request (no markers, no rider), as `hit` does, but counted together with the
        others that arrive while a count is on its way: one script call for all of them (on a
        cluster one per slot), each key incremented by its number of requests, and each request
        given the count it would have had alone (the counts in between, in arrival order)."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((key, window_seconds * 1000, future))
        if self._counting is None:
            self._counting = asyncio.create_task(self._count_pending())
        return await future

    async def _count_pending(self) -> None:
        try:
            while self._pending:
                pending, self._pending = self._pending, []
                waiting: dict[tuple[str, int], list[asyncio.Future]] = {}
                for key, window, future in pending:
                    waiting.setdefault((key, window), []).append(future)
                try:
                    counted = await self._count_keys({k: len(f) for k, f in waiting.items()})
                except Exception as exc:
                    for future in (f for _, _, f in pending):
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (key, window), futures in waiting.items():
                    count, ttl = counted[(key, window)]
                    for n, future in enumerate(futures, start=count - len(futures) + 1):
                        if not future.done():
                            future.set_result(Hit(n, ttl, False))
        finally:
            self._counting = None

    async def _count_keys(self, counts: dict[tuple[str, int], int]) -> dict[tuple[str, int], tuple[int, int]]:
        """INCRBY each (key, window) by its number; its count after and its ms left."""
        by_window: dict[tuple[int, int], list[tuple[str, int]]] = {}
        for (key, window), n in counts.items():
            slot = key_slot(key.encode()) if is_cluster(self._redis) else 0  # a script touches one slot
            by_window.setdefault((window, slot), []).append((key, n))
        groups = list(by_window.items())
        replies = await asyncio.gather(*(
            self._count_many(keys=[k for k, _ in keys], args=[window, *(n for _, n in keys)])
            for (window, _), keys in groups))
        out: dict[tuple[str, int], tuple[int, int]] = {}
        for ((window, _), keys), reply in zip(groups, replies):
            for i, (key, _) in enumerate(keys):
                out[(key, window)] = (int(reply[2 * i]), int(reply[2 * i + 1]))
        return out


def user_key(user_id: int, window: str) -> str:
    """A user's counter for a window name (shares the user's hash slot with their auth markers)."""
    return f"rl:{{{user_id}}}:{window}"


def address_key(scope: str, address: str) -> str:
    """A client address's counter for a scope, e.g. login."""
    return f"rl:{scope}:{address}"
