"""Explore: trending public posts, scored by recent likes and comments with time decay.

A periodic job computes the ranking in PostgreSQL and stores it in Redis as one sorted set; reads
take a slice of it and drop what the viewer follows, is blocked from, or wrote. While the ranking is
empty (a fresh install before its first likes, or a window without any), explore reads the newest
public posts instead (read_recent), dropped by the same rule (shown_live), so it is never a dead end.
"""

from __future__ import annotations

import asyncpg
from redis.asyncio import Redis

from storage import posts
from storage.ratelimit import Rider

KEY = "explore:trending"
SIZE = 1000

# engagement / (age in hours + 2)^1.5: recent engagement counts most, old posts sink
_TRENDING = """
WITH recent AS (
    SELECT post_id, count(*) AS n FROM likes WHERE created_at > now() - make_interval(hours => $1) GROUP BY post_id
    UNION ALL
    SELECT post_id, 2 * count(*) FROM comments WHERE created_at > now() - make_interval(hours => $1) GROUP BY post_id
)
SELECT p.id, sum(r.n) / power(extract(epoch FROM now() - p.created_at) / 3600 + 2, 1.5) AS score
FROM recent r JOIN posts p ON p.id = r.post_id JOIN users u ON u.id = p.author_id
WHERE NOT u.is_private AND u.is_active
GROUP BY p.id
ORDER BY score DESC
LIMIT $2
"""


async def compute_trending(pool: asyncpg.Pool, window_hours: int, size: int = SIZE) -> list[tuple[int, float]]:
    """(post id, score) of the most engaging public posts of the window, best first."""
    rows = await pool.fetch(_TRENDING, window_hours, size)
    return [(r["id"], float(r["score"])) for r in rows]


async def store_trending(redis: Redis, ranking: list[tuple[int, float]]) -> None:
    """Replace the stored ranking in one transaction."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(KEY)
        if ranking:
            pipe.zadd(KEY, {str(post_id): score for post_id, score in ranking})
        await pipe.execute()


async def has_trending(redis: Redis) -> bool:
    """Whether a ranking is stored (store_trending keeps no key for an empty one)."""
    return bool(await redis.exists(KEY))


# the newest `size` posts at most are looked at, whoever wrote them, so the cost is bounded however
# many of them are private; shown_live then applies the viewer's part of the rule
_RECENT = """
SELECT p.id FROM (SELECT id, author_id FROM posts ORDER BY id DESC LIMIT $1) p JOIN users u ON u.id = p.author_id
WHERE NOT u.is_private AND u.is_active
ORDER BY p.id DESC OFFSET $2 LIMIT $3
"""


async def read_recent(conn: asyncpg.Pool | asyncpg.Connection, offset: int, count: int,
                      size: int = SIZE) -> list[int]:
    """A slice of the newest public posts, newest first: what explore shows while no ranking is stored."""
    if not 0 <= offset < size:
        return []
    return [r["id"] for r in await conn.fetch(_RECENT, size, offset, min(count, size - offset))]


async def read_trending(redis: Redis, offset: int, count: int) -> list[int]:
    """A slice of the ranking, best first."""
    return trending_of(await redis.zrevrange(KEY, offset, offset + count - 1))


_READ_RANKED = """
local members = redis.call('ZREVRANGE', KEYS[k], ARGV[a], ARGV[a + 1])
local entries = {}
%s
return {members, entries}
""" % (posts.ENTRIES_LUA % "ARGV[a + 2]")


def trending_rider(offset: int, count: int) -> Rider:
    """read_trending as a read that rides in another script call (the rate limit's:
    storage.ratelimit) on one Redis node, with the ranked posts' cache entries (so a page needs
    no MGET of its own); on a cluster the ranking lies in a slot of its own, so it is read by
    itself there. ridden_trending_of reads its reply, ridden_cached_of the entries."""
    return Rider(_READ_RANKED, (KEY,), (offset, offset + count - 1, posts.POST_CACHE_PREFIX))


def trending_of(reply: list) -> list[int]:
    """read_trending's answer from a reply of ZREVRANGE over the ranking."""
    return [int(m) for m in reply]


def ridden_trending_of(reply: list) -> list[int]:
    """read_trending's answer from the reply of a trending_rider read."""
    return trending_of(reply[0])


def ridden_cached_of(reply: list) -> dict[int, bytes | None]:
    """The post cache entries a trending_rider read found (None: not cached), by post id."""
    members, entries = reply
    return posts.entries_of(members, entries)


async def shown_live(conn: asyncpg.Pool | asyncpg.Connection, viewer: int,
                     post_ids: list[int]) -> dict[int, asyncpg.Record]:
    """The live part (storage.posts.LIVE_COLUMNS) of the posts explore may show the viewer, by id,
    in one query: those that exist, unless their author is the viewer, followed, private,
    inactive, someone the viewer may not see (storage.visibility) or mutes."""
    if not post_ids:
        return {}
    rows = await conn.fetch(
        f"""
        SELECT p.id, {posts.LIVE_COLUMNS} FROM posts p JOIN users u ON u.id = p.author_id
        CROSS JOIN LATERAL visibility($1, u.id) v CROSS JOIN LATERAL muting($1, u.id) m
        WHERE p.id = ANY($2::bigint[]) AND v.visible AND NOT (
            u.id = $1 OR u.is_private OR NOT u.is_active OR m.muted
            OR EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = $1 AND f.followee_id = u.id))
        """,
        viewer, post_ids,
    )
    return {r["id"]: r for r in rows}
