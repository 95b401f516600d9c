"""Who consumes which partition, and from where: leases and offsets in PostgreSQL.

A consumer (one name, e.g. "notifications") runs in every process that has consumers. Each
process is a holder; the partitions of the consumer's topics are shared among the live holders
by `event_lease_round()` (migration 0015), which each holder calls every tick. A holder that
stops calls `release()`, so its partitions are taken within a tick; one that dies loses them
when its lease expires. The next offset to read is recorded per partition after the events
before it are handled.
"""

from __future__ import annotations

import asyncpg


async def lease_round(pool: asyncpg.Pool, consumer: str, holder: str, partitions: int, ttl_ms: int) -> list[int]:
    """Renew, rebalance and return the partitions this holder holds now."""
    held = await pool.fetchval("SELECT event_lease_round($1, $2, $3, $4)", consumer, holder, partitions, ttl_ms)
    return list(held)


async def all_held(pool: asyncpg.Pool, consumer: str, partitions: int) -> bool:
    """Whether every partition has a live holder."""
    held = await pool.fetchval(
        "SELECT count(*) FROM event_leases WHERE consumer = $1 AND expires_at > now() AND partition < $2",
        consumer, partitions)
    return held >= partitions


async def release(pool: asyncpg.Pool, consumer: str, holder: str) -> None:
    """Give back every partition (and the membership) of a holder that stops."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM event_leases WHERE consumer = $1 AND holder = $2", consumer, holder)
        await conn.execute("DELETE FROM event_members WHERE consumer = $1 AND holder = $2", consumer, holder)


async def get_offsets(pool: asyncpg.Pool, consumer: str, topics: list[str],
                      partitions: list[int]) -> dict[tuple[str, int], int]:
    """The next offset to read of each (topic, partition) that has one."""
    rows = await pool.fetch(
        "SELECT topic, partition, next_offset FROM event_offsets"
        " WHERE consumer = $1 AND topic = ANY($2::text[]) AND partition = ANY($3::int[])",
        consumer, topics, partitions)
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def set_offset(pool: asyncpg.Pool, consumer: str, topic: str, partition: int, next_offset: int,
                     holder: str) -> bool:
    """Record where a partition's reading has got to, if this holder still holds it (a holder
    whose lease ran out must not move the offset back under the new one)."""
    done = await pool.fetchval(
        "WITH held AS (SELECT 1 FROM event_leases WHERE consumer = $1 AND partition = $3 AND holder = $5)"
        " INSERT INTO event_offsets (consumer, topic, partition, next_offset)"
        " SELECT $1, $2, $3, $4 FROM held"
        " ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()"
        " RETURNING 1",
        consumer, topic, partition, next_offset, holder)
    return done is not None
