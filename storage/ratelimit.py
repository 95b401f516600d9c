"""Fixed-window rate limits in Redis, checked in one round trip with the cached auth states.

`RateLimiter.charge` counts a request without waiting for Redis while the count is far from its
limit: the process keeps, per key, the count Redis last answered (every process's requests up to
then) and adds its own requests since; they are sent to Redis at once, batched, and each answer
refreshes the count. Only while that count plus this process's own unsent requests stays
`headroom(limit)` below the limit, and the answer is under LEASE_SECONDS old and from this window,
does a request go on at once; the others wait for Redis as `count` does. So the count is never
lower in Redis than what was admitted once the sends arrive, and the limit is passed only if the
user's requests on other processes admitted meanwhile exceed the headroom within one round trip to
Redis (10 % of the limit: for 1,000 an hour, 100 frames in about a millisecond).
"""

from __future__ import annotations

import asyncio
import time
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


LEASE_SECONDS = 1.0  # how old the last answer from Redis may be for a request to go on without waiting
LEASES_MAX = 50_000  # keys whose last answer this process keeps; past it, the stale ones are dropped


def headroom(limit: int) -> int:
    """How far below its limit a count must stay for a request to go on without waiting."""
    return max(limit // 10, 1)


@dataclass
class _Lease:
    """What this process knows of one counter: its count in Redis at the last answer, when that
    came, when the window ends (monotonic), and the requests counted here since (not yet answered)."""

    known: int
    heard: float
    ends: float
    unsent: int = 0


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
        self._pending: list[tuple[str, int, asyncio.Future | None]] = []  # (key, window ms, its Hit)
        self._counting: asyncio.Task | None = None
        self._leases: dict[tuple[str, int], _Lease] = {}

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


    async def charge(self, key: str, window_seconds: int, limit: int) -> Hit:
        """Count one request against a limit, as `count` does, but without waiting for Redis while
        the count is far from the limit (the module's docstring says how far, and what it costs)."""
        window = window_seconds * 1000
        lease = self._leases.get((key, window))
        now = time.monotonic()
        if (lease is None or now - lease.heard >= LEASE_SECONDS or now >= lease.ends
                or lease.known + lease.unsent + 1 > limit - headroom(limit)):
            return await self.count(key, window_seconds)
        lease.unsent += 1
        self._pending.append((key, window, None))  # sent with the next count, answered to nobody
        if self._counting is None:
            self._counting = asyncio.create_task(self._count_pending())
        return Hit(lease.known + lease.unsent, int((lease.ends - now) * 1000), False)

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
                waiting: dict[tuple[str, int], list[asyncio.Future | None]] = {}
                for key, window, future in pending:
                    waiting.setdefault((key, window), []).append(future)
                try:
                    counted = await self._count_keys({k: len(f) for k, f in waiting.items()})
                except Exception as exc:
                    for future in (f for _, _, f in pending):
                        if future is not None and not future.done():
                            future.set_exception(exc)
                    for counter in waiting:  # requests let through uncounted; the next ones wait
                        self._leases.pop(counter, None)
                    continue
                now = time.monotonic()
                for (key, window), futures in waiting.items():
                    count, ttl = counted[(key, window)]
                    for n, future in enumerate(futures, start=count - len(futures) + 1):
                        if future is not None and not future.done():
                            future.set_result(Hit(n, ttl, False))
                    self._heard((key, window), count, now + ttl / 1000,
                                sum(1 for future in futures if future is None), now)
        finally:
            self._counting = None

    def _heard(self, counter: tuple[str, int], count: int, ends: float, sent: int, now: float) -> None:
        """Redis answered a counter's count, `sent` of this process's unanswered requests in it."""
        lease = self._leases.get(counter)
        if lease is None:
            if len(self._leases) >= LEASES_MAX:
                self._leases = {k: v for k, v in self._leases.items() if now - v.heard < LEASE_SECONDS or v.unsent}
            self._leases[counter] = _Lease(count, now, ends)
            return
        lease.known, lease.heard, lease.ends = count, now, ends
        lease.unsent = max(lease.unsent - sent, 0)

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
