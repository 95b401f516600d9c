"""Moderation: roles, reports and their queue, suspensions, the audit log and the counts of the
admin overview.

A suspension is the account's `is_active` turned off (with why and until when beside it), so every
reader of the visibility policy hides the account and what it made without knowing about
suspensions; lifting it turns the account back on. Nothing is deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

Conn = asyncpg.Connection | asyncpg.Pool

TARGET_TYPES = ("post", "comment", "story", "message", "user")
REASONS = ("spam", "harassment", "hate", "nudity", "violence", "self_harm", "ip", "other")


# ---------------------------------------------------------------- roles and the audit log

async def set_role_txn(conn: asyncpg.Connection, user_id: int, role: str | None,
                       is_verified: bool | None) -> asyncpg.Record | None:
    """Change an account's role and/or verified badge (None leaves one as it is); the row before
    (`old_role`, `old_verified`) and after, or None for no such account."""
    return await conn.fetchrow(
        "UPDATE users u SET role = coalesce($2, u.role), is_verified = coalesce($3, u.is_verified)"
        " FROM (SELECT id, role AS old_role, is_verified AS old_verified FROM users WHERE id = $1 FOR UPDATE) o"
        " WHERE u.id = o.id RETURNING u.*, avatar_key(u.avatar_media_id) AS avatar_key, o.old_role, o.old_verified",
        user_id, role, is_verified,
    )


async def audit_txn(conn: asyncpg.Connection, actor_id: int | None, action: str, target_type: str,
                    target_id: int, note: str = "", details: dict[str, Any] | None = None) -> None:
    """Record one moderation or role action in the caller's transaction (it happened iff that commits)."""
    await conn.execute(
        "INSERT INTO audit_log (actor_id, action, target_type, target_id, note, details) VALUES ($1, $2, $3, $4, $5, $6)",
        actor_id, action, target_type, target_id, note, details or {},
    )


async def list_audit(conn: Conn, before_id: int | None, limit: int) -> list[asyncpg.Record]:
    """The audit log, newest first, with the actor's username; up to limit + 1 rows."""
    return await conn.fetch(
        "SELECT a.*, u.username AS actor_username FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id"
        " WHERE ($1::bigint IS NULL OR a.id < $1) ORDER BY a.id DESC LIMIT $2",
        before_id, limit + 1,
    )


# ---------------------------------------------------------------- reports

async def create_report_txn(conn: asyncpg.Connection, reporter: int, target_type: str, target_id: int,
                            owner: int, reason: str, text: str) -> tuple[asyncpg.Record, bool]:
    """The reporter's open report on this target: a new one (True), or the one already open (False)."""
    row = await conn.fetchrow(
        "INSERT INTO reports (reporter_id, target_type, target_id, target_owner_id, reason, text)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (reporter_id, target_type, target_id) WHERE status = 'open' DO NOTHING RETURNING *",
        reporter, target_type, target_id, owner, reason, text,
    )
    if row is not None:
        return row, True
    return await conn.fetchrow(
        "SELECT * FROM reports WHERE reporter_id = $1 AND target_type = $2 AND target_id = $3 AND status = 'open'",
        reporter, target_type, target_id,
    ), False


async def get_report(conn: Conn, report_id: int) -> asyncpg.Record | None:
    """A report by id."""
    return await conn.fetchrow("SELECT * FROM reports WHERE id = $1", report_id)


_QUEUE_SQL = """
SELECT r.*, (SELECT count(*) FROM reports o WHERE o.target_type = r.target_type AND o.target_id = r.target_id)
       AS target_report_count
FROM reports r
WHERE r.status = $1 AND ($2::text IS NULL OR r.target_type = $2) AND ($3::bigint IS NULL OR r.id > $3)
ORDER BY r.id LIMIT $4
"""


async def queue(conn: Conn, status: str, target_type: str | None, after_id: int | None,
                limit: int) -> list[asyncpg.Record]:
    """Reports of a status (and target type), oldest first, each with how many reports its target
    has had; up to limit + 1 rows."""
    return await conn.fetch(_QUEUE_SQL, status, target_type, after_id, limit + 1)


async def reporters_on_target(conn: Conn, target_type: str, target_id: int) -> set[int]:
    """Who has an open report on this target."""
    rows = await conn.fetch(
        "SELECT reporter_id FROM reports WHERE target_type = $1 AND target_id = $2 AND status = 'open'",
        target_type, target_id,
    )
    return {r["reporter_id"] for r in rows}


async def resolve_target_txn(conn: asyncpg.Connection, target_type: str, target_id: int, action: str,
                             note: str, moderator: int) -> list[asyncpg.Record]:
    """Resolve every open report on a target with one action; the reports resolved."""
    return await conn.fetch(
        "UPDATE reports SET status = 'resolved', action = $3, note = $4, resolved_by = $5, resolved_at = now()"
        " WHERE target_type = $1 AND target_id = $2 AND status = 'open' RETURNING *",
        target_type, target_id, action, note, moderator,
    )


# ---------------------------------------------------------------- targets as a moderator sees them

_TARGET_SQL = {
    # id, owner_id, text, conversation_id, seq, created_at, gone (deleted or removed), media_ids
    "post": "SELECT p.id, p.author_id AS owner_id, p.caption AS text, NULL::bigint AS conversation_id,"
            " NULL::bigint AS seq, p.created_at, false AS gone,"
            " coalesce((SELECT array_agg(pm.media_id ORDER BY pm.position) FROM post_media pm WHERE pm.post_id = p.id),"
            " '{}') AS media_ids FROM posts p WHERE p.id = ANY($1::bigint[])",
    "comment": "SELECT c.id, c.author_id AS owner_id, c.text, NULL::bigint AS conversation_id, NULL::bigint AS seq,"
               " c.created_at, false AS gone, '{}'::bigint[] AS media_ids, c.post_id"
               " FROM comments c WHERE c.id = ANY($1::bigint[])",
    "story": "SELECT s.id, s.owner_id, s.caption AS text, NULL::bigint AS conversation_id, NULL::bigint AS seq,"
             " s.created_at, s.deleted_at IS NOT NULL AS gone,"
             " CASE WHEN s.media_id IS NULL THEN '{}'::bigint[] ELSE ARRAY[s.media_id] END AS media_ids"
             " FROM stories s WHERE s.id = ANY($1::bigint[])",
    "message": "SELECT m.id, m.sender_id AS owner_id, m.text, m.conversation_id, m.seq, m.created_at,"
               " m.deleted_at IS NOT NULL AS gone,"
               " CASE WHEN m.media_id IS NULL THEN '{}'::bigint[] ELSE ARRAY[m.media_id] END AS media_ids"
               " FROM messages m WHERE m.id = ANY($1::bigint[])",
    "user": "SELECT u.id, u.id AS owner_id, u.bio AS text, NULL::bigint AS conversation_id, NULL::bigint AS seq,"
            " u.created_at, false AS gone, '{}'::bigint[] AS media_ids FROM users u WHERE u.id = ANY($1::bigint[])",
}


async def targets(conn: Conn, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], asyncpg.Record]:
    """The reported things, whatever their visibility (a moderator sees suspended and private
    accounts' things too); one query per target type. A target deleted since is absent."""
    found: dict[tuple[str, int], asyncpg.Record] = {}
    for kind in TARGET_TYPES:
        ids = list({i for t, i in wanted if t == kind})
        if ids:
            for row in await conn.fetch(_TARGET_SQL[kind], ids):
                found[(kind, row["id"])] = row
    return found


async def accounts(conn: Conn, user_ids: list[int]) -> dict[int, asyncpg.Record]:
    """Accounts as moderators see them: names, role and standing, whatever their visibility."""
    rows = await conn.fetch(
        "SELECT id, username, full_name, role, is_active, is_verified, suspended_at, suspended_until, suspension_reason"
        " FROM users WHERE id = ANY($1::bigint[])", list(set(user_ids)),
    )
    return {r["id"]: r for r in rows}


async def get_message_by_id(conn: Conn, message_id: int, member: int) -> asyncpg.Record | None:
    """A live (not deleted) message of a conversation `member` belongs to, that reaches them (its
    sender may reach them: a block hides it, as history does)."""
    return await conn.fetchrow(
        "SELECT m.* FROM messages m JOIN conversation_members cm"
        " ON cm.conversation_id = m.conversation_id AND cm.user_id = $2"
        " WHERE m.id = $1 AND m.deleted_at IS NULL AND may_reach(m.sender_id, $2)",
        message_id, member,
    )


async def remove_message_txn(conn: asyncpg.Connection, message_id: int) -> asyncpg.Record | None:
    """A moderator removes a message: a tombstone like a deletion (seq kept, no gap), marked removed."""
    return await conn.fetchrow(
        "UPDATE messages SET text = '', media_id = NULL, deleted_at = coalesce(deleted_at, now()),"
        " removed_at = coalesce(removed_at, now()) WHERE id = $1 RETURNING id, conversation_id, seq, sender_id",
        message_id,
    )


# ---------------------------------------------------------------- suspensions

async def suspend_txn(conn: asyncpg.Connection, user_id: int, reason: str,
                      until: datetime | None) -> asyncpg.Record | None:
    """Suspend an account that is active or already suspended (a repeat replaces reason and
    until); the row, or None for no such account or one deactivated by its owner."""
    return await conn.fetchrow(
        "UPDATE users SET is_active = false, suspended_at = coalesce(suspended_at, now()), suspended_until = $3,"
        " suspension_reason = $2 WHERE id = $1 AND (is_active OR suspended_at IS NOT NULL) RETURNING *",
        user_id, reason, until,
    )


async def unsuspend_txn(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    """Lift a suspension: the account is active again; None if it was not suspended."""
    return await conn.fetchrow(
        "UPDATE users SET is_active = true, suspended_at = NULL, suspended_until = NULL, suspension_reason = NULL"
        " WHERE id = $1 AND suspended_at IS NOT NULL RETURNING *",
        user_id,
    )


async def expired_suspensions(conn: Conn, limit: int = 500) -> list[int]:
    """Accounts whose suspension has run out."""
    rows = await conn.fetch(
        "SELECT id FROM users WHERE suspended_at IS NOT NULL AND suspended_until <= now() ORDER BY id LIMIT $1", limit
    )
    return [r["id"] for r in rows]


# ---------------------------------------------------------------- the overview

async def stats(conn: Conn) -> asyncpg.Record:
    """Counts of the admin overview."""
    return await conn.fetchrow(
        "SELECT (SELECT count(*) FROM users) AS users,"
        " (SELECT count(*) FROM users WHERE is_active AND last_active_at > now() - interval '24 hours') AS active_24h,"
        " (SELECT count(*) FROM posts) AS posts,"
        " (SELECT count(*) FROM messages WHERE deleted_at IS NULL) AS messages,"
        " (SELECT count(*) FROM reports WHERE status = 'open') AS open_reports"
    )
