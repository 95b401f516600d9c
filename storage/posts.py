"""Posts and what hangs off them: media links, hashtags, mentions, locations, likes, saves.

Counters (posts.like_count, users.posts_count) move only when a row really appeared or went, in
the same transaction, so they stay exact under concurrent, repeated requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

import asyncpg
import msgspec
from redis.asyncio import Redis

from storage import cluster, likes, media, visibility
from storage.ratelimit import Rider

Conn = asyncpg.Connection | asyncpg.Pool
T = TypeVar("T")


class MediaUnavailable(Exception):
    """Some media ids are not the author's, are used elsewhere, or do not exist."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        super().__init__(f"media not available: {ids}")


# ---------------------------------------------------------------- writes


async def get_or_create_location_txn(conn: asyncpg.Connection, name: str, lat: float | None,
                                     lng: float | None) -> int:
    """The location with this name and coordinates, made once and reused."""
    return await conn.fetchval(
        "INSERT INTO locations (name, lat, lng) VALUES ($1, $2, $3)"
        " ON CONFLICT (lower(name), coalesce(lat, 'NaN'::double precision), coalesce(lng, 'NaN'::double precision))"
        " DO UPDATE SET name = locations.name RETURNING id",
        name, lat, lng,
    )


async def create_post_txn(conn: asyncpg.Connection, author_id: int, caption: str, media_ids: list[int],
                          location_id: int | None) -> asyncpg.Record:
    """Insert a post with its media (which must be the author's and unused: else MediaUnavailable)."""
    attached = await media.attach_media_txn(conn, author_id, media_ids)
    if attached != set(media_ids):
        raise MediaUnavailable([m for m in media_ids if m not in attached])
    post = await conn.fetchrow(
        "INSERT INTO posts (author_id, caption, location_id) VALUES ($1, $2, $3) RETURNING *",
        author_id, caption, location_id,
    )
    await conn.execute(
        "INSERT INTO post_media (post_id, position, media_id)"
        " SELECT $1, t.ord - 1, t.mid FROM unnest($2::bigint[]) WITH ORDINALITY AS t(mid, ord)",
        post["id"], media_ids,
    )
    await conn.execute("UPDATE users SET posts_count = posts_count + 1 WHERE id = $1", author_id)
    return post


async def set_hashtags_txn(conn: asyncpg.Connection, post_id: int, names: list[str]) -> None:
    """Make the post's hashtags exactly `names` (lower case, no '#')."""
    names = sorted(set(names))  # a fixed order keeps concurrent inserts of the same tags deadlock-free
    await conn.execute(
        "DELETE FROM post_hashtags ph USING hashtags h WHERE ph.post_id = $1 AND h.id = ph.hashtag_id"
        " AND NOT h.name = ANY($2::text[])", post_id, names,
    )
    if names:
        await conn.execute("INSERT INTO hashtags (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING",
                           names)
        await conn.execute(
            "INSERT INTO post_hashtags (hashtag_id, post_id) SELECT id, $2 FROM hashtags WHERE name = ANY($1::text[])"
            " ON CONFLICT DO NOTHING", names, post_id,
        )


async def set_mentions_txn(conn: asyncpg.Connection, post_id: int, author_id: int, usernames: list[str]) -> list[int]:
    """Make the post's mentions the named users, ignoring unknown ones, the author, and users
    the author may not reach (storage.visibility); returns the ids newly mentioned."""
    rows = await conn.fetch(
        "SELECT id FROM users WHERE lower(username) = ANY($1::text[]) AND is_active AND id <> $2",
        sorted({u.lower() for u in usernames}), author_id,
    )
    reached = await visibility.reachable(conn, author_id, [r["id"] for r in rows])
    wanted = sorted(r["id"] for r in rows if r["id"] in reached)
    await conn.execute("DELETE FROM mentions WHERE post_id = $1 AND NOT user_id = ANY($2::bigint[])", post_id, wanted)
    added = await conn.fetch(
        "INSERT INTO mentions (post_id, user_id) SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING"
        " RETURNING user_id", post_id, wanted,
    )
    return [r["user_id"] for r in added]


async def update_caption_txn(conn: asyncpg.Connection, post_id: int, author_id: int, caption: str) -> asyncpg.Record | None:
    """Replace the caption of the author's post; None when it is not theirs or gone."""
    return await conn.fetchrow(
        "UPDATE posts SET caption = $3, edited_at = now() WHERE id = $1 AND author_id = $2 RETURNING *",
        post_id, author_id, caption,
    )


async def delete_post_txn(conn: asyncpg.Connection, post_id: int, author_id: int) -> DeletedPost | None:
    """Delete the author's post and everything hanging off it; its media are retired for the media
    job to remove from S3. None when it is not theirs or gone."""
    post = await conn.fetchrow("SELECT * FROM posts WHERE id = $1 AND author_id = $2 FOR UPDATE", post_id, author_id)
    if post is None:
        return None
    shown = await conn.fetch(
        "SELECT m.id, m.original_key, m.renditions FROM post_media pm JOIN media m ON m.id = pm.media_id"
        " WHERE pm.post_id = $1", post_id)
    media_ids = [r["id"] for r in shown]
    await conn.execute("DELETE FROM posts WHERE id = $1", post_id)
    await media.retire_media_txn(conn, media_ids)
    await conn.execute("UPDATE users SET posts_count = greatest(posts_count - 1, 0) WHERE id = $1", author_id)
    return DeletedPost(post, [key for row in shown for key in media.object_keys(row)])


@dataclass(frozen=True)
class DeletedPost:
    """A deleted post's row and its media's S3 keys (for the caller to remove after commit)."""

    row: asyncpg.Record
    object_keys: list[str]


POST_LIKES = likes.Likes("likes", "post_id", "posts")
like_txn = POST_LIKES.like_txn  # (conn, post_id, user_id): True if this made a new like
unlike_txn = POST_LIKES.unlike_txn  # (conn, post_id, user_id): True if there was one


async def save(conn: Conn, post_id: int, user_id: int) -> bool:
    """Save a post for later; True if it was not saved yet."""
    return bool(await conn.fetchval(
        "INSERT INTO saves (user_id, post_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true", user_id, post_id))


async def unsave(conn: Conn, post_id: int, user_id: int) -> bool:
    """Remove a saved post; True if it was saved."""
    return bool(await conn.fetchval("DELETE FROM saves WHERE user_id = $1 AND post_id = $2 RETURNING true",
                                    user_id, post_id))


# ---------------------------------------------------------------- reads


async def get_post(conn: Conn, post_id: int) -> asyncpg.Record | None:
    """A post row."""
    return await conn.fetchrow("SELECT * FROM posts WHERE id = $1", post_id)


async def author_page(conn: Conn, viewer: int, author_id: int, before_id: int | None, limit: int) -> LivePage:
    """The author's posts below the cursor, newest first, with their live part, in one query;
    none unless the viewer may see the author's things (storage.visibility)."""
    rows = await conn.fetch(
        f"SELECT p.id, {LIVE_COLUMNS} FROM posts p WHERE p.author_id = $2 AND ($3::bigint IS NULL OR p.id < $3)"
        " AND (SELECT visible_to($1::bigint, $2)) ORDER BY p.id DESC LIMIT $4",  # an InitPlan: checked once
        viewer, author_id, before_id, limit,
    )
    return LivePage([r["id"] for r in rows], {r["id"]: r for r in rows})


async def saved_page(conn: Conn, viewer: int, before_save_id: int | None,
                     limit: int) -> tuple[list[tuple[int, int]], dict[int, asyncpg.Record]]:
    """(save id, post id) of the viewer's saved posts, most recently saved first, and the live
    part of those the viewer may still see, in one query."""
    rows = await conn.fetch(
        f"SELECT s.id AS save_id, s.post_id AS id, {LIVE_COLUMNS}, v.visible AS shown FROM saves s"
        " JOIN posts p ON p.id = s.post_id CROSS JOIN LATERAL visibility($1::bigint, p.author_id) v"
        " WHERE s.user_id = $1 AND ($2::bigint IS NULL OR s.id < $2)"
        " ORDER BY s.id DESC LIMIT $3", viewer, before_save_id, limit,
    )
    return [(r["save_id"], r["id"]) for r in rows], {r["id"]: r for r in rows if r["shown"]}


async def likers(conn: Conn, post_id: int, before_like_id: int | None, limit: int) -> list[asyncpg.Record]:
    """Users who liked a post, most recent first: like_id, id, username, full_name, is_verified, avatar_key."""
    return await conn.fetch(
        "SELECT l.id AS like_id, u.id, u.username, u.full_name, u.is_verified, avatar_key(u.avatar_media_id) AS avatar_key"
        " FROM likes l"
        " JOIN users u ON u.id = l.user_id WHERE l.post_id = $1 AND ($2::bigint IS NULL OR l.id < $2)"
        " ORDER BY l.id DESC LIMIT $3", post_id, before_like_id, limit,
    )


# ---------------------------------------------------------------- the post cache
#
# What a post looks like to everyone (author, caption, media, hashtags, location) is cached in
# Redis for ten minutes, in whatever form the caller renders it to (handlers/posts.py keeps it as
# pre-encoded JSON), and dropped when the post is edited or deleted. What changes all the time or
# differs per viewer (counts, liked, saved) and whether the viewer may see it at all come from
# one PostgreSQL query per page (LIVE_COLUMNS, read by the same query that picks the page's posts),
# which also drops deleted posts: so a page costs one MGET and one query, plus one query for the
# posts not in the cache.

POST_CACHE_TTL = 600


# (v2: the pre-encoded form; v3: with the author's avatar. A new name each time, so processes of
# an older release, during a rolling deploy, never read an entry they cannot decode, nor overwrite one)
POST_CACHE_PREFIX = "post:v3:"


def post_cache_key(post_id: int) -> str:
    """The cache entry of a post."""
    return f"{POST_CACHE_PREFIX}{post_id}"


# Lua for a script that read a page of post ids (`members`) on one Redis node: the cache entry of
# each ('' where there is none) into `entries`, the prefix (POST_CACHE_PREFIX) passed as the ARGV
# named by the format argument. The entries are keys of other slots, which a script on a cluster
# may not touch. The riders of storage.timelines and storage.explore use it; entries_of reads it.
ENTRIES_LUA = """for i, member in ipairs(members) do
    entries[i] = redis.call('GET', %s .. member) or ''
end"""


def entries_of(members: list, entries: list) -> dict[int, bytes | None]:
    """The post cache entries an ENTRIES_LUA read found (None: not cached), by post id."""
    return {int(m): e or None for m, e in zip(members, entries)}


_READ_ENTRIES = """
local members = {unpack(ARGV, a + 1)}
local entries = {}
%s
return {members, entries}
""" % (ENTRIES_LUA % "ARGV[a]")


def entries_rider(post_ids: Sequence[int]) -> Rider:
    """The cache entries of posts named beforehand, as a read that rides in another script call
    (the rate limit's: storage.ratelimit) on one Redis node; ridden_entries_of reads its reply."""
    return Rider(_READ_ENTRIES, (), (POST_CACHE_PREFIX, *post_ids))


def ridden_entries_of(reply: list) -> dict[int, bytes | None]:
    """The post cache entries an entries_rider read found (None: not cached), by post id."""
    return entries_of(*reply)


_STATIC = """
SELECT p.id, p.author_id, p.caption, p.location_id, p.created_at, p.edited_at,
       u.username, u.full_name, u.is_verified, avatar_key(u.avatar_media_id) AS avatar_key,
       l.name AS location_name, l.lat, l.lng,
       coalesce((SELECT json_agg(json_build_object(
                    'id', m.id, 'kind', m.kind, 'content_type', m.content_type, 'width', m.width,
                    'height', m.height, 'placeholder', m.placeholder, 'renditions', m.renditions,
                    'original_key', m.original_key) ORDER BY pm.position)
                 FROM post_media pm JOIN media m ON m.id = pm.media_id WHERE pm.post_id = p.id), '[]') AS media,
       coalesce((SELECT array_agg(h.name ORDER BY h.name)
                 FROM post_hashtags ph JOIN hashtags h ON h.id = ph.hashtag_id WHERE ph.post_id = p.id), '{}') AS hashtags
FROM posts p JOIN users u ON u.id = p.author_id LEFT JOIN locations l ON l.id = p.location_id
WHERE p.id = ANY($1::bigint[])
"""

# The live part of a post `p` for the viewer $1: a query that picks a page's posts selects these
# beside them, so a page's ids, counts, flags and visibility come in one round trip.
LIVE_COLUMNS = """p.like_count, p.comment_count,
       EXISTS (SELECT 1 FROM likes k WHERE k.post_id = p.id AND k.user_id = $1) AS liked,
       EXISTS (SELECT 1 FROM saves s WHERE s.user_id = $1 AND s.post_id = p.id) AS saved"""

_LIVE = f"""
SELECT p.id, {LIVE_COLUMNS}
FROM posts p CROSS JOIN LATERAL visibility($1::bigint, p.author_id) v
WHERE p.id = ANY($2::bigint[]) AND v.visible
"""


@dataclass(frozen=True)
class LivePage:
    """A page's post ids in their order, shown or not (the cursor follows the last), and the live
    part (LIVE_COLUMNS) of those the viewer may see, by id."""

    ids: list[int]
    live: dict[int, asyncpg.Record]


async def cached_posts(pool: asyncpg.Pool, redis: Redis, post_ids: list[int], encode: Callable[[asyncpg.Record], bytes],
                       decode: Callable[[bytes], T], read: Mapping[int, bytes | None] | None = None) -> dict[int, T]:
    """The viewer-independent part of posts, as `decode` makes it of the cached bytes: from the
    cache (the entries in `read` already read from it, None where there was none; the others in
    one MGET), the misses in one
    query, rendered to bytes by `encode` (a post row: id, author, caption, location, created_at,
    edited_at, media as dicts, hashtags) and cached. An entry `decode` refuses (one of an older
    form) counts as a miss."""
    ids = list(dict.fromkeys(post_ids))
    if not ids:
        return {}
    read = read or {}
    unread = [i for i in ids if i not in read]
    entries = [(i, read[i]) for i in ids if i in read]
    if unread:
        entries += zip(unread, await cluster.mget(redis, [post_cache_key(i) for i in unread]))
    found: dict[int, T] = {}
    for post_id, raw in entries:
        if raw is not None:
            try:
                found[post_id] = decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
    missing = [i for i in ids if i not in found]
    if missing:
        encoded = {r["id"]: encode(r) for r in await pool.fetch(_STATIC, missing)}
        if encoded:
            async with redis.pipeline(transaction=False) as pipe:
                for post_id, data in encoded.items():
                    pipe.set(post_cache_key(post_id), data, ex=POST_CACHE_TTL)
                await pipe.execute()
        found.update((post_id, decode(data)) for post_id, data in encoded.items())
    return found


async def live_posts(pool: asyncpg.Pool, viewer: int | None, post_ids: list[int]) -> dict[int, asyncpg.Record]:
    """The per-viewer, ever-changing part (like_count, comment_count, liked, saved) of the posts
    that exist and that the viewer may see (pages read it with their ids: LIVE_COLUMNS)."""
    if not post_ids:
        return {}
    return {r["id"]: r for r in await pool.fetch(_LIVE, viewer, list(set(post_ids)))}


FORGET_CHUNK = 1000  # cache keys dropped per DEL


async def forget_authored(pool: asyncpg.Pool, redis: Redis, author_id: int) -> None:
    """Drop every post of an author from the cache (after their name or avatar changed, which
    each entry holds), a chunk of keys at a time: a rare write, and an entry not cached costs nothing."""
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM posts WHERE author_id = $1", author_id)]
    for start in range(0, len(ids), FORGET_CHUNK):
        await forget_cached(redis, ids[start:start + FORGET_CHUNK])


async def forget_cached(redis: Redis, post_ids: Iterable[int]) -> None:
    """Drop posts from the cache (after an edit or a delete has committed)."""
    keys = [post_cache_key(i) for i in post_ids]
    if keys:
        await redis.delete(*keys)
