"""Home timelines in Redis, owned by one object: the key names, the cap, trimming, rebuilding.

A timeline is a sorted set of post ids scored by the id itself (ids are time-ordered). A timeline
holds a sentinel member "0" (score 0) from the moment it is built, so "exists" means "built":
fan-out pushes only into timelines that exist, and a missing one is rebuilt from PostgreSQL on
read, never shown empty. Scores are doubles, exact to 53 bits, and ids are 64-bit: two ids that
round to the same score are told apart by their member, so pages are read with an inclusive bound
and filtered exactly. A rebuild writes the newest `cap` posts; pushes let a timeline grow to
`cap + cap // 8` before trimming it back to `cap`.
"""

from __future__ import annotations

from typing import AsyncIterator, Iterable, Sequence

import asyncpg
from redis.asyncio import Redis

from storage import posts
from storage.cluster import queue_script, run_scripted, slot_groups
from storage.ratelimit import Rider

SENTINEL = "0"

# push only into built timelines (KEYS: the timelines; ARGV: cap, slack, then score/member pairs).
# A built timeline holds at least its sentinel, so ZCARD > 0 is "exists". The trim runs only once a
# timeline is `slack` past its cap, and takes it back to the cap: a full timeline costs two calls a
# push, not three (ZCARD and ZADD; the trim once in `slack` pushes).
_PUSH = """
local cap, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
local pushed = 0
for i = 1, #KEYS do
    local key = KEYS[i]
    local size = redis.call('ZCARD', key)
    if size > 0 then
        for j = 3, #ARGV, 2 do
            size = size + redis.call('ZADD', key, ARGV[j], ARGV[j + 1])
        end
        if size > cap + 1 + slack then
            redis.call('ZREMRANGEBYRANK', key, 1, size - cap - 1)
        end
        pushed = pushed + 1
    end
end
return pushed
"""


# a page of a home timeline, as the body of a Lua function(k, a) (a storage.ratelimit.Rider):
# KEYS[k] the timeline; ARGV[a], ARGV[a + 1], ARGV[a + 2] the upper bound (inclusive), how many,
# the TTL to renew; ARGV[a + 3], if given, the post cache's key prefix (storage.posts): the cache
# entry of each post is read too ('' when there is none), on one Redis node only (the entries are
# keys of other slots, which a script on a cluster may not touch). Returns {members, 1 if the
# timeline is built, entries}.
_READ_HOME = """
local members = redis.call('ZREVRANGEBYSCORE', KEYS[k], ARGV[a], '(0', 'LIMIT', 0, ARGV[a + 1])
local built = redis.call('EXPIRE', KEYS[k], ARGV[a + 2], 'XX')
local entries = {}
if ARGV[a + 3] then
%s
end
return {members, built, entries}
""" % (posts.ENTRIES_LUA % "ARGV[a + 3]")


class Timelines:
    """The FeedManager of glint: verbs in pairs, one place for keys and the cap."""

    def __init__(self, redis: Redis, *, cap: int = 800, ttl_seconds: int = 30 * 24 * 3600) -> None:
        self.redis = redis
        self.cap = cap
        self.ttl = ttl_seconds
        self.slack = cap // 8  # how far past the cap a pushed timeline may grow before it is trimmed
        self._push = redis.register_script(_PUSH)
        self._read = redis.register_script(f"local function read(k, a)\n{_READ_HOME}\nend\nreturn read(1, 1)")

    @staticmethod
    def key(user_id: int) -> str:
        """The home timeline of a user (the id as hash tag keeps it on the user's cluster slot)."""
        return f"timeline:{{{user_id}}}"

    async def push_to_home(self, user_ids: Sequence[int], post_ids: Sequence[int], chunk: int = 1000) -> int:
        """Add posts to the built timelines among `user_ids`; return how many timelines took them.

        One non-transactional pipeline of script calls, `chunk` timelines a call. On a Redis
        Cluster a script's keys must share a slot and every user's timeline has its own, so there
        the call is made per slot and the cluster pipeline groups the calls per node."""
        args: list[object] = [self.cap, self.slack]
        for post_id in post_ids:
            args += [post_id, post_id]

        async def queue(pipe) -> None:
            for start in range(0, len(user_ids), chunk):
                for keys in slot_groups(self.redis, [self.key(u) for u in user_ids[start:start + chunk]]):
                    await queue_script(self.redis, pipe, self._push, keys, args)

        return sum(int(result) for result in await run_scripted(self.redis, self._push, queue))

    async def unpush_from_home(self, user_id: int, post_ids: Iterable[int]) -> None:
        """Remove posts (e.g. of an unfollowed or blocked author) from a user's timeline."""
        ids = [str(p) for p in post_ids]
        if ids:
            await self.redis.zrem(self.key(user_id), *ids)

    async def store_home(self, user_id: int, post_ids: Sequence[int]) -> None:
        """Write a whole timeline (a rebuild): the sentinel and the newest `cap` posts."""
        key = self.key(user_id)
        mapping = {SENTINEL: 0, **{str(p): p for p in post_ids[: self.cap]}}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.zadd(key, mapping)
            pipe.expire(key, self.ttl)
            await pipe.execute()

    async def drop_home(self, user_id: int) -> None:
        """Forget a timeline; the next read rebuilds it."""
        await self.redis.delete(self.key(user_id))

    async def read_home(self, user_id: int, before: int | None, count: int) -> list[int] | None:
        """Up to `count` post ids older than `before` (newest first); None if the timeline is not built."""
        rider = self.home_rider(user_id, before, count)
        return self.home_of(await self._read(keys=rider.keys, args=rider.args), before, count)

    def home_rider(self, user_id: int, before: int | None, count: int, with_posts: bool = False) -> Rider:
        """read_home as a read that rides in another script call on the user's slot (the rate
        limit's: storage.ratelimit); home_of reads its reply. with_posts (on one Redis node only)
        reads the posts' cache entries in the same call: cached_of."""
        args: tuple = ("+inf" if before is None else before, count + 8, self.ttl)
        return Rider(_READ_HOME, (self.key(user_id),), (*args, posts.POST_CACHE_PREFIX) if with_posts else args)

    @staticmethod
    def cached_of(reply: list) -> dict[int, bytes | None]:
        """The post cache entries a home_rider read with_posts found (None: not cached), by post id."""
        members, _, entries = reply
        return posts.entries_of(members, entries)

    @staticmethod
    def home_of(reply: list, before: int | None, count: int) -> list[int] | None:
        """read_home's answer from the reply of a home_rider read."""
        members, built, _ = reply
        if not members and not built:
            return None
        ids = [int(m) for m in members]
        if before is not None:
            ids = [i for i in ids if i < before]
        return ids[:count]


# ------------------------------------------------------------------ PostgreSQL side

async def rebuild_ids(conn: asyncpg.Pool | asyncpg.Connection, user_id: int, celebrity_threshold: int,
                      limit: int) -> list[int]:
    """The newest posts a timeline should hold: the user's own and those of followed authors who
    are fanned out to (celebrities are merged at read time instead)."""
    rows = await conn.fetch(
        """
        SELECT p.id FROM posts p
        WHERE p.author_id = $1 OR p.author_id IN (
            SELECT f.followee_id FROM follows f JOIN users u ON u.id = f.followee_id
            WHERE f.follower_id = $1 AND u.followers_count < $2)
        ORDER BY p.id DESC LIMIT $3
        """,
        user_id, celebrity_threshold, limit,
    )
    return [r["id"] for r in rows]


async def fanout_targets(pool: asyncpg.Pool, author_id: int, active_days: int,
                         chunk: int = 2000) -> AsyncIterator[list[int]]:
    """The author, then the author's followers active in the last `active_days` days except those
    who mute the author, in lists of up to `chunk` as PostgreSQL produces them (one query, read
    through a cursor, so the first timelines are written while the rest are still being read).

    The followers come from index-only scans of follows (followee_id, follower_id) and of the
    active users' (id, last_active_at) (migration 0018a). The mute test is muted_by(follower, author) written as an anti-join: the function, a
    subquery, is not inlined, and a call per follower costs more than the rest of the query."""
    yield [author_id]
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        cursor = await conn.cursor(
            """
            SELECT f.follower_id FROM follows f JOIN users u ON u.id = f.follower_id
            WHERE f.followee_id = $1 AND u.is_active AND u.last_active_at > now() - make_interval(days => $2)
              AND NOT EXISTS (SELECT 1 FROM mutes m WHERE m.muter_id = f.follower_id AND m.muted_id = $1)
            """,
            author_id, active_days,
        )
        while rows := await cursor.fetch(chunk):
            yield [r[0] for r in rows]
            if len(rows) < chunk:
                break


async def home_page(conn: asyncpg.Pool | asyncpg.Connection, viewer: int, timeline_ids: list[int],
                    celebrity_threshold: int, before: int | None, count: int) -> posts.LivePage:
    """The home feed's next `count` posts below `before`: the timeline's ids merged with the recent
    posts of the celebrities the viewer follows (not fanned out: merged when the feed is read),
    newest first, with the live part of those the viewer may see (not deleted, visible, author not
    muted: a mute made after fan-out acts here), in one query. The celebrities are found from the
    `celebrities` list, which holds every account at the threshold while keep_celebrities has run
    with it (migration 0020): the reader's follows are not walked."""
    rows = await conn.fetch(
        f"""
        WITH candidates AS (
            SELECT t.id FROM unnest($2::bigint[]) AS t(id)
            UNION
            SELECT c.id FROM celebrities cel
            JOIN follows f ON f.follower_id = $1 AND f.followee_id = cel.user_id
            JOIN users u ON u.id = cel.user_id AND u.followers_count >= $3
            JOIN LATERAL (
                SELECT id FROM posts WHERE author_id = cel.user_id AND ($4::bigint IS NULL OR id < $4)
                ORDER BY id DESC LIMIT $5
            ) c ON true
            ORDER BY id DESC LIMIT $5
        )
        SELECT c.id, {posts.LIVE_COLUMNS},
               p.id IS NOT NULL AND v.visible AND NOT m.muted AS shown
        FROM candidates c LEFT JOIN posts p ON p.id = c.id
        LEFT JOIN LATERAL visibility($1::bigint, p.author_id) v ON true
        LEFT JOIN LATERAL muting($1::bigint, p.author_id) m ON true
        """,
        viewer, timeline_ids, celebrity_threshold, before, count,
    )
    return posts.LivePage(sorted((r["id"] for r in rows), reverse=True), {r["id"]: r for r in rows if r["shown"]})


async def keep_celebrities(conn: asyncpg.Connection, threshold: int) -> None:
    """Make the `celebrities` list hold every account with at least `threshold` followers, as
    home_page needs from a process that merges from there: lower the list's floor to it and add
    the accounts already past it (nothing to do when the floor is at or below it already). The
    lock waits for the transactions whose counts rose (the trigger of migration 0020 added to the
    list with the floor it read) and holds new ones until the floor is lowered, so no account
    passes the new floor unlisted; a start that lowers it holds follows for one scan of users.
    Processes starting at once take turns."""
    async with conn.transaction():
        if await conn.fetchval("SELECT followers FROM celebrity_floor") <= threshold:
            return
        # SHARE ROW EXCLUSIVE: conflicts with the ROW EXCLUSIVE a follow's INSERT takes, and with
        # another process lowering the floor at the same time (two SHARE locks would each wait on
        # the other's INSERT)
        await conn.execute("LOCK TABLE celebrities IN SHARE ROW EXCLUSIVE MODE")
        await conn.execute("UPDATE celebrity_floor SET followers = least(followers, $1)", threshold)
        await list_celebrities(conn)


async def list_celebrities(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Add every account at the floor to the `celebrities` list: after the floor was lowered
    (keep_celebrities), or counts were written without an UPDATE of them (COPY: the bench's seed)."""
    await conn.execute(
        "INSERT INTO celebrities (user_id) SELECT id FROM users"
        " WHERE followers_count >= (SELECT followers FROM celebrity_floor) ON CONFLICT DO NOTHING"
    )


async def recent_post_ids(conn: asyncpg.Pool | asyncpg.Connection, author_id: int, limit: int) -> list[int]:
    """An author's newest post ids (to merge on follow, to remove on unfollow or block)."""
    rows = await conn.fetch("SELECT id FROM posts WHERE author_id = $1 ORDER BY id DESC LIMIT $2", author_id, limit)
    return [r["id"] for r in rows]


async def followers_count(conn: asyncpg.Pool | asyncpg.Connection, user_id: int) -> int:
    """How many followers a user has (decides fan-out or merge-at-read)."""
    return await conn.fetchval("SELECT followers_count FROM users WHERE id = $1", user_id) or 0
