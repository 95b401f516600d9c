"""Posts and what hangs off them: media links, hashtags, mentions, locations, likes, saves.

Counters (posts.like_count, users.posts_count) move only when a row really appeared or went, in
the same transaction, so they stay exact under concurrent, repeated requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import asyncpg

from storage import graph, media

Conn = asyncpg.Connection | asyncpg.Pool


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
    blocked either way with the author; returns the ids newly mentioned."""
    rows = await conn.fetch(
        "SELECT id FROM users WHERE lower(username) = ANY($1::text[]) AND is_active AND id <> $2",
        sorted({u.lower() for u in usernames}), author_id,
    )
    blocked = await graph.blocked_either_way(conn, author_id, [r["id"] for r in rows])
    wanted = sorted(r["id"] for r in rows if r["id"] not in blocked)
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


async def delete_post_txn(conn: asyncpg.Connection, post_id: int, author_id: int) -> asyncpg.Record | None:
    """Delete the author's post and everything hanging off it; its media are retired for the media
    job to remove from S3. None when it is not theirs or gone."""
    post = await conn.fetchrow("SELECT * FROM posts WHERE id = $1 AND author_id = $2 FOR UPDATE", post_id, author_id)
    if post is None:
        return None
    media_ids = [r["media_id"] for r in await conn.fetch("SELECT media_id FROM post_media WHERE post_id = $1", post_id)]
    await conn.execute("DELETE FROM posts WHERE id = $1", post_id)
    await media.retire_media_txn(conn, media_ids)
    await conn.execute("UPDATE users SET posts_count = greatest(posts_count - 1, 0) WHERE id = $1", author_id)
    return post


async def like_txn(conn: asyncpg.Connection, post_id: int, user_id: int) -> bool:
    """Like a post; True if this made a new like (the count moves only then)."""
    inserted = await conn.fetchval(
        "INSERT INTO likes (post_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        post_id, user_id,
    )
    if inserted:
        await conn.execute("UPDATE posts SET like_count = like_count + 1 WHERE id = $1", post_id)
    return bool(inserted)


async def unlike_txn(conn: asyncpg.Connection, post_id: int, user_id: int) -> bool:
    """Take a like back; True if there was one."""
    deleted = await conn.fetchval("DELETE FROM likes WHERE post_id = $1 AND user_id = $2 RETURNING true",
                                  post_id, user_id)
    if deleted:
        await conn.execute("UPDATE posts SET like_count = like_count - 1 WHERE id = $1", post_id)
    return bool(deleted)


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


async def author_post_ids(conn: Conn, author_id: int, before_id: int | None, limit: int) -> list[int]:
    """The author's post ids, newest first, below the cursor."""
    rows = await conn.fetch(
        "SELECT id FROM posts WHERE author_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        author_id, before_id, limit,
    )
    return [r["id"] for r in rows]


async def saved_post_ids(conn: Conn, user_id: int, before_save_id: int | None, limit: int) -> list[tuple[int, int]]:
    """(save id, post id) of the user's saved posts, most recently saved first."""
    rows = await conn.fetch(
        "SELECT id, post_id FROM saves WHERE user_id = $1 AND ($2::bigint IS NULL OR id < $2)"
        " ORDER BY id DESC LIMIT $3", user_id, before_save_id, limit,
    )
    return [(r["id"], r["post_id"]) for r in rows]


async def likers(conn: Conn, post_id: int, before_like_id: int | None, limit: int) -> list[asyncpg.Record]:
    """Users who liked a post, most recent first: like_id, id, username, full_name, is_verified."""
    return await conn.fetch(
        "SELECT l.id AS like_id, u.id, u.username, u.full_name, u.is_verified FROM likes l"
        " JOIN users u ON u.id = l.user_id WHERE l.post_id = $1 AND ($2::bigint IS NULL OR l.id < $2)"
        " ORDER BY l.id DESC LIMIT $3", post_id, before_like_id, limit,
    )


@dataclass
class PostBundle:
    """Everything needed to render some posts for one viewer, loaded in four queries."""

    posts: dict[int, asyncpg.Record] = field(default_factory=dict)
    media: dict[int, list[asyncpg.Record]] = field(default_factory=dict)
    hashtags: dict[int, list[str]] = field(default_factory=dict)
    liked: set[int] = field(default_factory=set)
    saved: set[int] = field(default_factory=set)


async def load_posts(conn: Conn, post_ids: Iterable[int], viewer_id: int | None) -> PostBundle:
    """Posts with author, location, media, hashtags and the viewer's liked/saved flags. Missing
    (deleted) ids are simply absent; visibility is the caller's check."""
    ids = list(set(post_ids))
    bundle = PostBundle()
    if not ids:
        return bundle
    rows = await conn.fetch(
        "SELECT p.*, u.username, u.full_name, u.is_verified, l.name AS location_name, l.lat, l.lng"
        " FROM posts p JOIN users u ON u.id = p.author_id LEFT JOIN locations l ON l.id = p.location_id"
        " WHERE p.id = ANY($1::bigint[])", ids,
    )
    bundle.posts = {r["id"]: r for r in rows}
    for row in await conn.fetch(
        "SELECT pm.post_id, m.* FROM post_media pm JOIN media m ON m.id = pm.media_id"
        " WHERE pm.post_id = ANY($1::bigint[]) ORDER BY pm.post_id, pm.position", ids,
    ):
        bundle.media.setdefault(row["post_id"], []).append(row)
    for row in await conn.fetch(
        "SELECT ph.post_id, h.name FROM post_hashtags ph JOIN hashtags h ON h.id = ph.hashtag_id"
        " WHERE ph.post_id = ANY($1::bigint[]) ORDER BY h.name", ids,
    ):
        bundle.hashtags.setdefault(row["post_id"], []).append(row["name"])
    if viewer_id is not None:
        for row in await conn.fetch(
            "SELECT 'liked' AS flag, post_id FROM likes WHERE user_id = $1 AND post_id = ANY($2::bigint[])"
            " UNION ALL SELECT 'saved', post_id FROM saves WHERE user_id = $1 AND post_id = ANY($2::bigint[])",
            viewer_id, ids,
        ):
            (bundle.liked if row["flag"] == "liked" else bundle.saved).add(row["post_id"])
    return bundle
