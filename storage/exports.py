"""Data exports: the export rows (pending, ready, expired) and the reads that gather everything an
account holds into the archive's JSON files."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from storage.messages import readable_by, replies_hidden

Conn = asyncpg.Pool | asyncpg.Connection
STALE = timedelta(hours=1)  # far beyond every retry of the export consumer


# ---------------------------------------------------------------- the export rows


async def request_txn(conn: asyncpg.Connection, user_id: int) -> tuple[asyncpg.Record, bool]:
    """The account's pending export, made now if there is none; (row, whether it was made now).
    One pending for longer than `STALE` is taken as failed (its build was given up on) and replaced."""
    await conn.execute(
        "UPDATE exports SET status = 'failed' WHERE user_id = $1 AND status = 'pending'"
        " AND requested_at < now() - $2::interval", user_id, STALE)
    # one statement that either makes the pending export or returns the one there is, however
    # requests and the export's own build race: DO NOTHING and a SELECT after it found nothing when
    # the pending one was built between the two (a 500 for a repeated request). The update
    # changes nothing; xmax = 0 marks a row this statement inserted.
    row = await conn.fetchrow(
        "INSERT INTO exports (user_id) VALUES ($1) ON CONFLICT (user_id) WHERE status = 'pending'"
        " DO UPDATE SET requested_at = exports.requested_at RETURNING *, xmax = 0 AS created", user_id)
    return row, row["created"]


async def latest(conn: Conn, user_id: int) -> asyncpg.Record | None:
    """The account's newest export that is pending or ready."""
    return await conn.fetchrow(
        "SELECT * FROM exports WHERE user_id = $1 AND status IN ('pending', 'ready') ORDER BY id DESC LIMIT 1",
        user_id)


async def get_pending(conn: Conn, export_id: int) -> asyncpg.Record | None:
    """An export still waiting to be built."""
    return await conn.fetchrow("SELECT * FROM exports WHERE id = $1 AND status = 'pending'", export_id)


async def mark_ready(conn: Conn, export_id: int, key: str, size: int, now: datetime, expires_at: datetime) -> bool:
    """The archive is in S3; False if the export was no longer pending."""
    return await conn.fetchval(
        "UPDATE exports SET status = 'ready', object_key = $2, size_bytes = $3, ready_at = $4, expires_at = $5"
        " WHERE id = $1 AND status = 'pending' RETURNING true",
        export_id, key, size, now, expires_at) is not None


async def list_expired(conn: Conn, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Exports expired at `now` whose archive is still in S3."""
    return await conn.fetch(
        "SELECT id, object_key FROM exports WHERE status IN ('ready', 'expired') AND object_key IS NOT NULL"
        " AND expires_at <= $1 ORDER BY expires_at LIMIT $2", now, limit)


async def mark_expired(conn: Conn, export_ids: list[int]) -> None:
    """The archives of these exports were deleted."""
    await conn.execute("UPDATE exports SET status = 'expired', object_key = NULL WHERE id = ANY($1::bigint[])",
                       export_ids)


async def object_keys_of(conn: Conn, user_id: int) -> list[str]:
    """Every archive key the account has in S3 (for its erasure)."""
    rows = await conn.fetch("SELECT object_key FROM exports WHERE user_id = $1 AND object_key IS NOT NULL", user_id)
    return [r["object_key"] for r in rows]


# ---------------------------------------------------------------- what goes into the archive


def _rows(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [dict(r) for r in records]


async def gather(conn: Conn, user_id: int) -> dict[str, Any]:
    """Everything the account holds, by archive file name (without .json); ids stay integers here."""
    profile = await conn.fetchrow(
        "SELECT id, username, email, full_name, bio, website, avatar_media_id, is_private, is_verified,"
        " show_presence, notification_prefs, created_at FROM users WHERE id = $1", user_id)
    posts = await conn.fetch(
        "SELECT p.id, p.caption, p.created_at, p.edited_at, l.name AS location, l.lat, l.lng,"
        " coalesce((SELECT array_agg(pm.media_id ORDER BY pm.position) FROM post_media pm WHERE pm.post_id = p.id),"
        "          '{}') AS media_ids"
        " FROM posts p LEFT JOIN locations l ON l.id = p.location_id WHERE p.author_id = $1 ORDER BY p.id", user_id)
    return {
        "profile": dict(profile) if profile else {},
        "posts": _rows(posts),
        "comments": _rows(await conn.fetch(
            "SELECT id, post_id, parent_id, text, created_at FROM comments WHERE author_id = $1 ORDER BY id", user_id)),
        "likes": _rows(await conn.fetch(
            "SELECT post_id, created_at FROM likes WHERE user_id = $1 ORDER BY id", user_id)),
        "saves": _rows(await conn.fetch(
            "SELECT post_id, created_at FROM saves WHERE user_id = $1 ORDER BY id", user_id)),
        "stories": _rows(await conn.fetch(
            "SELECT id, media_id, caption, close_friends_only, created_at, expires_at, view_count"
            " FROM stories WHERE owner_id = $1 AND deleted_at IS NULL ORDER BY id", user_id)),
        "followers": _rows(await conn.fetch(
            "SELECT u.id, u.username, f.created_at FROM follows f JOIN users u ON u.id = f.follower_id"
            " WHERE f.followee_id = $1 ORDER BY f.created_at", user_id)),
        "following": _rows(await conn.fetch(
            "SELECT u.id, u.username, f.created_at FROM follows f JOIN users u ON u.id = f.followee_id"
            " WHERE f.follower_id = $1 ORDER BY f.created_at", user_id)),
        "conversations": await _conversations(conn, user_id),
    }


async def _conversations(conn: Conn, user_id: int) -> list[dict[str, Any]]:
    conversations = await conn.fetch(
        "SELECT c.id, c.kind, c.title, c.created_at,"
        " (SELECT array_agg(m.user_id ORDER BY m.user_id) FROM conversation_members m"
        "  WHERE m.conversation_id = c.id) AS member_ids"
        " FROM conversations c JOIN conversation_members me ON me.conversation_id = c.id AND me.user_id = $1"
        " ORDER BY c.id", user_id)
    # the messages the account may read, as history shows them (storage.messages.readable_by): a
    # block keeps the other's messages out of the archive as it keeps them out of every reader, and
    # a reply to one of those is no reply here either (replies_hidden)
    messages = await conn.fetch(
        "SELECT m.id, m.conversation_id, m.seq, m.sender_id, m.text, m.media_id, m.reply_to_seq, m.created_at"
        " FROM messages m JOIN conversation_members me ON me.conversation_id = m.conversation_id AND me.user_id = $1"
        f" WHERE m.deleted_at IS NULL AND m.removed_at IS NULL AND {readable_by('$1')}"
        " ORDER BY m.conversation_id, m.seq", user_id)
    unseen = await replies_hidden(conn, [(user_id, m) for m in messages])
    by_conversation: dict[int, list[dict[str, Any]]] = {}
    for message in messages:
        row = dict(message)
        if (user_id, row.pop("id")) in unseen:
            row["reply_to_seq"] = None
        by_conversation.setdefault(row.pop("conversation_id"), []).append(row)
    return [{**dict(c), "messages": by_conversation.get(c["id"], [])} for c in conversations]


async def media_of(conn: Conn, user_id: int, media_ids: list[int]) -> list[asyncpg.Record]:
    """The account's own media rows among `media_ids` (their originals go into the archive)."""
    return await conn.fetch(
        "SELECT id, content_type, original_key FROM media WHERE owner_id = $1 AND id = ANY($2::bigint[])"
        " ORDER BY id", user_id, media_ids)
