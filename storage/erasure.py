"""Account deletion: requesting it (the account hidden at once), cancelling it by logging in within
the grace period, and erasing an account whose grace period is over: its S3 objects first, then its
rows (every table cascades from users), with the counters of other users' things it touched put
right in the same transaction."""

from __future__ import annotations

from datetime import datetime

import asyncpg

Conn = asyncpg.Pool | asyncpg.Connection


async def request_txn(conn: asyncpg.Connection, user_id: int, now: datetime) -> bool:
    """Hide an active account and record the deletion request; False if it is not active."""
    return await conn.fetchval(
        "UPDATE users SET is_active = false, deletion_requested_at = $2"
        " WHERE id = $1 AND is_active RETURNING true",
        user_id, now,
    ) is not None


async def cancel_txn(conn: asyncpg.Connection, user_id: int, not_before: datetime) -> bool:
    """Cancel a pending deletion requested after `not_before` whose erasure has not started, and show
    the account again; False if there is none to cancel."""
    return await conn.fetchval(
        "UPDATE users SET is_active = true, deletion_requested_at = NULL"
        " WHERE id = $1 AND deletion_requested_at > $2 AND erasure_started_at IS NULL AND suspended_at IS NULL"
        " RETURNING true",
        user_id, not_before,
    ) is not None


async def is_pending(conn: Conn, user_id: int) -> bool:
    """Whether the account has a deletion pending (not yet being erased)."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND deletion_requested_at IS NOT NULL"
        " AND erasure_started_at IS NULL)", user_id,
    )


async def take_due(conn: Conn, cutoff: datetime, limit: int) -> list[int]:
    """Mark accounts whose deletion was requested before `cutoff` as being erased (so a login no
    longer cancels), and return them with any whose erasure was started and not finished."""
    rows = await conn.fetch(
        "UPDATE users SET erasure_started_at = now()"
        " WHERE id IN (SELECT id FROM users WHERE deletion_requested_at <= $1 AND erasure_started_at IS NULL"
        "              AND NOT is_active ORDER BY deletion_requested_at LIMIT $2)"
        " RETURNING id",
        cutoff, limit,
    )
    resumed = await conn.fetch("SELECT id FROM users WHERE erasure_started_at IS NOT NULL LIMIT $1", limit)
    return sorted({r["id"] for r in rows} | {r["id"] for r in resumed})


async def media_rows(conn: Conn, user_id: int) -> list[asyncpg.Record]:
    """Every media row the account owns (their objects are to be deleted)."""
    return await conn.fetch("SELECT * FROM media WHERE owner_id = $1", user_id)


async def erase_txn(conn: asyncpg.Connection, user_id: int) -> bool:
    """Delete the account's rows, keeping other users' counters right; False if it is not being
    erased (already gone)."""
    locked = await conn.fetchval(
        "SELECT true FROM users WHERE id = $1 AND erasure_started_at IS NOT NULL FOR UPDATE", user_id
    )
    if locked is None:
        return False
    await conn.execute(
        "UPDATE users SET followers_count = greatest(followers_count - 1, 0)"
        " WHERE id IN (SELECT followee_id FROM follows WHERE follower_id = $1)", user_id)
    await conn.execute(
        "UPDATE users SET following_count = greatest(following_count - 1, 0)"
        " WHERE id IN (SELECT follower_id FROM follows WHERE followee_id = $1)", user_id)
    await conn.execute(
        "UPDATE posts SET like_count = greatest(like_count - 1, 0)"
        " WHERE id IN (SELECT post_id FROM likes WHERE user_id = $1) AND author_id <> $1", user_id)
    await conn.execute(
        "UPDATE comments SET like_count = greatest(like_count - 1, 0)"
        " WHERE id IN (SELECT comment_id FROM comment_likes WHERE user_id = $1) AND author_id <> $1", user_id)
    touched = await conn.fetchrow(
        "SELECT array_agg(DISTINCT c.post_id) AS posts, array_agg(DISTINCT c.parent_id) AS parents"
        " FROM comments c JOIN posts p ON p.id = c.post_id WHERE c.author_id = $1 AND p.author_id <> $1", user_id)
    # conversations cascade from their creator: hand those with other members to one of them, so
    # the others keep their history (less the erased account's messages)
    await conn.execute(
        "UPDATE conversations c SET created_by = m.user_id"
        " FROM (SELECT DISTINCT ON (conversation_id) conversation_id, user_id FROM conversation_members"
        "       WHERE user_id <> $1 ORDER BY conversation_id, joined_at) m"
        " WHERE c.created_by = $1 AND m.conversation_id = c.id", user_id)
    # a post's media links do not cascade from media: the posts go first, then everything else
    await conn.execute("DELETE FROM posts WHERE author_id = $1", user_id)
    await conn.execute("DELETE FROM users WHERE id = $1", user_id)
    await conn.execute("DELETE FROM celebrities WHERE user_id = $1", user_id)  # no foreign key: migration 0020
    # comments of the account on others' posts went with it (and their replies): recount those
    await conn.execute(
        "UPDATE posts p SET comment_count = (SELECT count(*) FROM comments c WHERE c.post_id = p.id)"
        " WHERE p.id = ANY($1::bigint[])", touched["posts"] or [])
    await conn.execute(
        "UPDATE comments p SET reply_count = (SELECT count(*) FROM comments c WHERE c.parent_id = p.id)"
        " WHERE p.id = ANY($1::bigint[])", [p for p in (touched["parents"] or []) if p is not None])
    return True
