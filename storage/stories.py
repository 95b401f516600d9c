"""Stories in PostgreSQL, and the per-viewer tray cache in Redis.

Every read that decides whether a story is live takes `now` from the caller (the app's clock) and
compares it with expires_at in SQL, so an expired story is never served, whatever the jobs have
done yet, and tests move time without sleeping.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable, Sequence

import asyncpg
from redis.asyncio import Redis

from storage import media

Conn = asyncpg.Connection | asyncpg.Pool

LIFETIME = timedelta(hours=24)

# a viewer the owner may not be shown is left out of the viewers and their count (storage.visibility)
_VISIBLE_VIEWER = "u.is_active AND user_shown(s.owner_id, v.viewer_id)"


# ---------------------------------------------------------------- writing


async def create_story_txn(conn: asyncpg.Connection, owner_id: int, media_id: int, caption: str,
                           close_friends_only: bool, now: datetime) -> asyncpg.Record | None:
    """Inside a transaction: attach the owner's unused media and make a story of it, live from
    `now` for exactly 24 hours; None when the media is not the owner's, used already, or gone."""
    if media_id not in await media.attach_media_txn(conn, owner_id, [media_id]):
        return None
    return await conn.fetchrow(
        "INSERT INTO stories (owner_id, media_id, caption, close_friends_only, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5::timestamptz, $5::timestamptz + $6::interval) RETURNING *",
        owner_id, media_id, caption, close_friends_only, now, LIFETIME,
    )


async def delete_story_txn(conn: asyncpg.Connection, story_id: int, owner_id: int, now: datetime) -> asyncpg.Record | None:
    """Inside a transaction: delete the owner's story and retire its media (the media job removes
    the objects); None unless it is the owner's and not deleted already."""
    row = await conn.fetchrow(
        "UPDATE stories SET deleted_at = $3, media_removed_at = coalesce(media_removed_at, $3)"
        " WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL RETURNING *",
        story_id, owner_id, now,
    )
    if row is not None and row["media_id"] is not None:
        await media.retire_media_txn(conn, [row["media_id"]])
    return row


async def record_view(conn: Conn, story_id: int, viewer_id: int, now: datetime) -> bool:
    """Record that the viewer saw the story; True the first time, False for every repeat."""
    return bool(await conn.fetchval(
        "INSERT INTO story_views (story_id, viewer_id, created_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING true",
        story_id, viewer_id, now,
    ))


async def record_reply_txn(conn: asyncpg.Connection, message_id: int, conversation_id: int, story_id: int,
                           sender_id: int, kind: str, now: datetime) -> bool:
    """Inside a transaction: remember which story a direct message answers; True if new."""
    return bool(await conn.fetchval(
        "INSERT INTO story_replies (message_id, conversation_id, story_id, sender_id, kind, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
        message_id, conversation_id, story_id, sender_id, kind, now,
    ))


async def story_of_message(conn: Conn, message_id: int) -> int | None:
    """The story a direct message reacts or replies to, if any."""
    return await conn.fetchval("SELECT story_id FROM story_replies WHERE message_id = $1", message_id)


# ---------------------------------------------------------------- reading


async def get_live_story(conn: Conn, viewer_id: int, story_id: int, now: datetime) -> asyncpg.Record | None:
    """A story that is not deleted nor expired at `now`, of an active owner, that the viewer may
    see (SQL `story_visible_to`, the policy's rule for stories)."""
    return await conn.fetchrow(
        "SELECT s.* FROM stories s JOIN users u ON u.id = s.owner_id"
        " WHERE s.id = $1 AND s.deleted_at IS NULL AND s.expires_at > $2 AND u.is_active"
        " AND story_visible_to($3, s.owner_id, s.close_friends_only)",
        story_id, now, viewer_id,
    )


async def get_own_story(conn: Conn, story_id: int, owner_id: int) -> asyncpg.Record | None:
    """The owner's story, live or archived, unless deleted."""
    return await conn.fetchrow(
        "SELECT * FROM stories WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL", story_id, owner_id
    )


async def own_live_stories(conn: Conn, owner_id: int, now: datetime) -> list[asyncpg.Record]:
    """The owner's live stories, oldest first, each with its count of (visible) viewers."""
    return await conn.fetch(
        "SELECT s.*, (SELECT count(*) FROM story_views v JOIN users u ON u.id = v.viewer_id"
        f"  WHERE v.story_id = s.id AND {_VISIBLE_VIEWER}) AS viewer_count"
        " FROM stories s WHERE s.owner_id = $1 AND s.deleted_at IS NULL AND s.expires_at > $2"
        " ORDER BY s.created_at, s.id",
        owner_id, now,
    )


async def tray_rows(conn: Conn, viewer_id: int, now: datetime) -> list[asyncpg.Record]:
    """Every live story the viewer's tray shows: the viewer's own, and those of active users the
    viewer follows and may see, unless the viewer mutes their stories (close-friends stories only to
    the owner's list);
    by owner, oldest first, each with the owner's names and the viewer's `seen`."""
    return await conn.fetch(
        """
        SELECT s.id, s.owner_id, s.media_id, s.caption, s.close_friends_only, s.created_at, s.expires_at,
               u.username, u.full_name, u.is_verified, avatar_key(u.avatar_media_id) AS avatar_key,
               EXISTS (SELECT 1 FROM story_views v WHERE v.story_id = s.id AND v.viewer_id = $1) AS seen
        FROM stories s JOIN users u ON u.id = s.owner_id
        WHERE s.owner_id IN (SELECT followee_id FROM follows WHERE follower_id = $1 UNION ALL SELECT $1)
          AND s.deleted_at IS NULL AND s.expires_at > $2 AND u.is_active
          AND story_visible_to($1, s.owner_id, s.close_friends_only)
          AND (s.owner_id = $1 OR NOT muted_by($1, s.owner_id, true))
        ORDER BY s.owner_id, s.created_at, s.id
        """,
        viewer_id, now,
    )


async def still_in_tray(conn: Conn, viewer_id: int, owner_ids: Iterable[int]) -> set[int]:
    """Which of these owners a cached tray may still show: the viewer, or active users the viewer
    still follows and may see, unless the viewer mutes their stories (an unfollow, block or mute
    since the cache was made)."""
    ids = list(set(owner_ids))
    if not ids:
        return set()
    rows = await conn.fetch(
        """
        SELECT u.id FROM users u
        WHERE u.id = ANY($2::bigint[]) AND u.is_active
          AND (u.id = $1 OR (
                EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = $1 AND f.followee_id = u.id)
            AND visible_to($1, u.id) AND NOT muted_by($1, u.id, true)))
        """,
        viewer_id, ids,
    )
    return {r["id"] for r in rows}


async def list_viewers(conn: Conn, story_id: int, before_view: int | None, limit: int) -> list[asyncpg.Record]:
    """Who viewed the story, latest first (none blocked either way with its owner); up to
    limit + 1 rows, each with view_id for the cursor."""
    return await conn.fetch(
        "SELECT v.id AS view_id, v.created_at AS viewed_at, u.id, u.username, u.full_name, u.is_verified,"
        " avatar_key(u.avatar_media_id) AS avatar_key"
        " FROM story_views v JOIN stories s ON s.id = v.story_id JOIN users u ON u.id = v.viewer_id"
        f" WHERE v.story_id = $1 AND ($2::bigint IS NULL OR v.id < $2) AND {_VISIBLE_VIEWER}"
        " ORDER BY v.id DESC LIMIT $3",
        story_id, before_view, limit + 1,
    )


async def count_viewers(conn: Conn, story_id: int) -> int:
    """How many viewers list_viewers shows in all."""
    return await conn.fetchval(
        "SELECT count(*) FROM story_views v JOIN stories s ON s.id = v.story_id JOIN users u ON u.id = v.viewer_id"
        f" WHERE v.story_id = $1 AND {_VISIBLE_VIEWER}",
        story_id,
    )


async def list_archive(conn: Conn, owner_id: int, before: int | None, limit: int) -> list[asyncpg.Record]:
    """The owner's archived stories, newest first; up to limit + 1 rows."""
    return await conn.fetch(
        "SELECT * FROM stories WHERE owner_id = $1 AND archived_at IS NOT NULL AND deleted_at IS NULL"
        " AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        owner_id, before, limit + 1,
    )


async def follower_ids(conn: Conn, user_id: int) -> list[int]:
    """Everyone who follows the user (whose trays show the user's stories)."""
    return [r["follower_id"] for r in await conn.fetch("SELECT follower_id FROM follows WHERE followee_id = $1", user_id)]


# ---------------------------------------------------------------- close friends


async def list_close_friends(conn: Conn, owner_id: int, after: int | None, limit: int) -> list[asyncpg.Record]:
    """A page of the owner's close friends (active users), by id; up to limit + 1 rows."""
    return await conn.fetch(
        "SELECT u.id, u.username, u.full_name, u.is_verified, avatar_key(u.avatar_media_id) AS avatar_key FROM close_friends c JOIN users u ON u.id = c.friend_id"
        " WHERE c.owner_id = $1 AND u.is_active AND ($2::bigint IS NULL OR u.id > $2) ORDER BY u.id LIMIT $3",
        owner_id, after, limit + 1,
    )


async def eligible_friends(conn: Conn, owner_id: int, user_ids: Sequence[int]) -> set[int]:
    """Which of these may be the owner's close friends: active users other than the owner, whom
    the owner may reach."""
    rows = await conn.fetch(
        "SELECT u.id FROM users u WHERE u.id = ANY($2::bigint[]) AND u.is_active AND u.id <> $1"
        " AND may_reach($1, u.id)",
        owner_id, list(user_ids),
    )
    return {r["id"] for r in rows}


async def replace_close_friends_txn(conn: asyncpg.Connection, owner_id: int, friend_ids: Sequence[int]) -> set[int]:
    """Inside a transaction: make the owner's list exactly `friend_ids`; the users added or removed."""
    removed = await conn.fetch(
        "DELETE FROM close_friends WHERE owner_id = $1 AND NOT (friend_id = ANY($2::bigint[])) RETURNING friend_id",
        owner_id, list(friend_ids),
    )
    added = await conn.fetch(
        "INSERT INTO close_friends (owner_id, friend_id) SELECT $1, unnest($2::bigint[])"
        " ON CONFLICT DO NOTHING RETURNING friend_id",
        owner_id, list(friend_ids),
    )
    return {r["friend_id"] for r in removed} | {r["friend_id"] for r in added}


# ---------------------------------------------------------------- jobs


async def archive_expired(conn: Conn, now: datetime, limit: int) -> int:
    """Archive up to `limit` stories expired at `now` for their owners, freezing their view
    counts; returns how many."""
    status = await conn.execute(
        "UPDATE stories s SET archived_at = $1,"
        " view_count = (SELECT count(*) FROM story_views v JOIN users u ON u.id = v.viewer_id"
        f"  WHERE v.story_id = s.id AND {_VISIBLE_VIEWER})"
        " WHERE s.id IN (SELECT id FROM stories WHERE archived_at IS NULL AND deleted_at IS NULL"
        "  AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        now, limit,
    )
    return int(status.split()[-1])


async def retire_expired_media(conn: Conn, now: datetime, grace: timedelta, limit: int) -> list[asyncpg.Record]:
    """Mark deleted the media of up to `limit` stories expired at least `grace` before `now`, and
    return those media rows (id, original_key, renditions) for their objects' removal."""
    return await conn.fetch(
        "WITH due AS (UPDATE stories SET media_removed_at = $1"
        "  WHERE id IN (SELECT id FROM stories WHERE media_removed_at IS NULL"
        "   AND expires_at <= $1::timestamptz - $2::interval ORDER BY expires_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
        "  RETURNING media_id)"
        " UPDATE media m SET deleted_at = $1 FROM due WHERE m.id = due.media_id AND m.deleted_at IS NULL"
        " RETURNING m.id, m.original_key, m.renditions",
        now, grace, limit,
    )


# ---------------------------------------------------------------- the tray cache


class TrayCache:
    """Each viewer's tray, cached in Redis: one key per viewer, dropped by the writes that change
    it (a new or deleted story drops its owner's followers' trays; a view, the viewer's)."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl = ttl_seconds

    @staticmethod
    def key(viewer_id: int) -> str:
        """The viewer's cached tray (the id as hash tag keeps it on the user's cluster slot)."""
        return f"stories:tray:{{{viewer_id}}}"

    async def read(self, viewer_id: int) -> bytes | None:
        """The cached tray, if any."""
        return await self.redis.get(self.key(viewer_id))

    async def store(self, viewer_id: int, data: bytes) -> None:
        """Cache a freshly built tray."""
        await self.redis.set(self.key(viewer_id), data, ex=self.ttl)

    async def drop(self, viewer_ids: Iterable[int], chunk: int = 1000) -> None:
        """Forget these viewers' trays, in chunks."""
        keys = [self.key(v) for v in set(viewer_ids)]
        for start in range(0, len(keys), chunk):
            # one UNLINK per chunk on a node; a cluster client splits it per slot, pipelined per node
            await self.redis.unlink(*keys[start:start + chunk])
