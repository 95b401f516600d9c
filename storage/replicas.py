"""Read pools on PostgreSQL streaming replicas, for the reads that tolerate a little lag.

Writes and the reads that must see them go to the primary. A replica is used only while its
last check found it reachable, streaming, and no further behind than `max_lag` seconds; one that
lags past the bound or is down is skipped (its reads go to the primary) until a later check finds
it caught up. A user who has just written is read from the primary for a short window
(read-your-writes), marked by a Redis key so that every API process knows.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field

import asyncpg
from redis.asyncio import Redis

log = logging.getLogger("glint.replicas")

# seconds behind the primary: 0 when everything received is replayed; a replica not streaming
# (its primary unreachable) cannot know how far behind it is, and counts as infinitely far
LAG_SQL = """
SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 'Infinity'::float8
    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
    ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8, 'Infinity'::float8)
END
"""


def wrote_key(user_id: int) -> str:
    """The Redis key that marks a user's recent write (hash-tagged by user, like every per-user key)."""
    return f"ryw:{{{user_id}}}"


@dataclass
class Replicas:
    """The replica pools and which of them are fit to read from now."""

    pools: list[asyncpg.Pool]
    max_lag: float
    check_timeout: float = 1.0
    usable: list[asyncpg.Pool] = field(default_factory=list)
    lags: dict[int, float] = field(default_factory=dict)
    _turn: itertools.count = field(default_factory=itertools.count)

    async def check(self) -> None:
        """Measure every replica's lag and keep those within the bound."""
        async def lag_of(pool: asyncpg.Pool) -> float:
            try:
                return float(await asyncio.wait_for(pool.fetchval(LAG_SQL), self.check_timeout))
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("replica check failed: %r", exc)
                return float("inf")

        lags = await asyncio.gather(*(lag_of(pool) for pool in self.pools))
        self.lags = dict(enumerate(lags))
        usable = [pool for pool, lag in zip(self.pools, lags) if lag <= self.max_lag]
        if len(usable) != len(self.usable):
            log.info("replicas usable: %d of %d (lags %s)", len(usable), len(self.pools),
                     ", ".join(f"{lag:.2f}s" for lag in lags))
        self.usable = usable

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Check on an interval until stopped."""
        while not stop.is_set():
            await self.check()
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass

    def pick(self) -> asyncpg.Pool | None:
        """A usable replica (round robin), or None when none is."""
        usable = self.usable
        return usable[next(self._turn) % len(usable)] if usable else None

    async def reader(self, primary: asyncpg.Pool, redis: Redis, user_id: int | None) -> asyncpg.Pool:
        """Where a lag-tolerant read of this user goes: a replica, unless none is usable or the
        user wrote within the read-your-writes window."""
        replica = self.pick()
        if replica is None:
            return primary
        if user_id is not None and await redis.exists(wrote_key(user_id)):
            return primary
        return replica

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.pools))
