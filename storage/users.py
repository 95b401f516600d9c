"""Users: the rows behind accounts and logins."""

from __future__ import annotations

import re
from typing import Iterable

import asyncpg

import events
from storage import graph

MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9._]{1,30})")


def mentioned_usernames(text: str) -> list[str]:
    """The @usernames a caption or comment names, lower-cased, each once, in order."""
    return list(dict.fromkeys(n.rstrip(".").lower() for n in MENTION.findall(text) if n.rstrip(".")))


# a user row as profiles show it: every column, and the avatar's file (avatar_key(), migration 0023)
PROFILE_COLUMNS = "*, avatar_key(avatar_media_id) AS avatar_key"
# what lists show of a user `u` but its id (handlers.posts.user_brief): names, the badge, the avatar's file
BRIEF_COLUMNS = "u.username, u.full_name, u.is_verified, avatar_key(u.avatar_media_id) AS avatar_key"


async def create_user_txn(conn: asyncpg.Connection, username: str, email: str, password_hash: str,
                          full_name: str) -> asyncpg.Record:
    """Insert a user; raises asyncpg.UniqueViolationError naming the index when taken."""
    return await conn.fetchrow(
        "INSERT INTO users (username, email, password_hash, full_name) VALUES ($1, $2, $3, $4) RETURNING " + PROFILE_COLUMNS,
        username, email, password_hash, full_name,
    )


async def get_login(conn: asyncpg.Pool | asyncpg.Connection, login: str) -> asyncpg.Record | None:
    """The user a login name (username or e-mail, any case) belongs to."""
    if "@" in login:
        sql = "SELECT id, username, password_hash, is_active, suspended_at FROM users WHERE lower(email) = lower($1)"
    else:
        sql = "SELECT id, username, password_hash, is_active, suspended_at FROM users WHERE lower(username) = lower($1)"
    return await conn.fetchrow(sql, login)


async def get_user(conn: asyncpg.Pool | asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    """A user row by id."""
    return await conn.fetchrow(f"SELECT {PROFILE_COLUMNS} FROM users WHERE id = $1", user_id)


async def get_brief(conn: asyncpg.Pool | asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    """What lists show of a user (handlers.posts.user_brief): names, the badge, the avatar's file."""
    return await conn.fetchrow(f"SELECT u.id, {BRIEF_COLUMNS} FROM users u WHERE u.id = $1", user_id)


async def get_role(conn: asyncpg.Pool | asyncpg.Connection, user_id: int) -> str | None:
    """A live (active) account's role: user, moderator or admin; None for no such account."""
    return await conn.fetchval("SELECT role FROM users WHERE id = $1 AND is_active", user_id)


async def set_password_hash(conn: asyncpg.Pool | asyncpg.Connection, user_id: int, password_hash: str) -> None:
    """Replace a stored password hash (after a parameter upgrade)."""
    await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def touch_active(conn: asyncpg.Pool | asyncpg.Connection, user_id: int) -> None:
    """Record that the user was active now (feeds fan out only to recently active users)."""
    await conn.execute(
        "UPDATE users SET last_active_at = now() WHERE id = $1 AND last_active_at < now() - interval '1 hour'",
        user_id,
    )


# ---------------------------------------------------------------- e-mail verification

async def add_email_verification_txn(conn: asyncpg.Connection, user_id: int, email: str, token_hash: bytes,
                                      ttl_seconds: int) -> None:
    """Store a verification token (hashed) for the address the user registered with."""
    await conn.execute(
        "INSERT INTO email_verifications (token_hash, user_id, email, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        token_hash, user_id, email, float(ttl_seconds),
    )


async def verify_email_txn(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """Spend a live verification token and mark its user verified, if the address is still theirs;
    the user row, or None for an unknown, spent or expired token."""
    found = await conn.fetchrow(
        "UPDATE email_verifications SET used_at = now()"
        " WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id, email",
        token_hash,
    )
    if found is None:
        return None
    return await conn.fetchrow(
        "UPDATE users SET is_verified = true WHERE id = $1 AND lower(email) = lower($2) AND is_active RETURNING "
        + PROFILE_COLUMNS,
        found["user_id"], found["email"],
    )


# ---------------------------------------------------------------- profile and settings

async def update_profile_txn(conn: asyncpg.Connection, user_id: int, *, full_name: str | None, bio: str | None,
                             website: str | None, set_avatar: bool, avatar_media_id: int | None) -> asyncpg.Record:
    """Change the given profile fields (None leaves one as it is; the avatar changes when set_avatar)."""
    return await conn.fetchrow(
        "UPDATE users SET full_name = coalesce($2, full_name), bio = coalesce($3, bio),"
        " website = coalesce($4, website),"
        " avatar_media_id = CASE WHEN $5 THEN $6::bigint ELSE avatar_media_id END"
        " WHERE id = $1 RETURNING " + PROFILE_COLUMNS,
        user_id, full_name, bio, website, set_avatar, avatar_media_id,
    )


async def attach_own_media_txn(conn: asyncpg.Connection, user_id: int, media_id: int) -> bool:
    """Mark the user's own media row as in use (so it is not swept as an orphan upload); False if
    there is no such row."""
    return await conn.fetchval(
        "UPDATE media SET attached_at = coalesce(attached_at, now())"
        " WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL RETURNING true",
        media_id, user_id,
    ) is not None


# the kinds a user sets channels for (the rest go by another kind's)
NOTIFICATION_KINDS = tuple(kind for kind, about in events.NOTIFICATION_KINDS.items() if about.follows is None)
NOTIFICATION_CHANNELS = ("in_app", "push", "email")
# in-app and push on, e-mail off, unless the user said otherwise
DEFAULT_CHANNELS = {"in_app": True, "push": True, "email": False}


def merge_notification_prefs(stored: dict | None) -> dict[str, dict[str, bool]]:
    """The full kind × channel table: the user's stored choices over the defaults."""
    stored = stored or {}
    return {
        kind: {channel: bool(stored.get(kind, {}).get(channel, default)) for channel, default in DEFAULT_CHANNELS.items()}
        for kind in NOTIFICATION_KINDS
    }


async def get_notification_prefs(conn: asyncpg.Pool | asyncpg.Connection,
                                 user_ids: list[int]) -> dict[int, dict[str, dict[str, bool]]]:
    """Each existing user's notification preferences, {user_id: {kind: {channel: on}}}, defaults filled in."""
    rows = await conn.fetch(
        "SELECT id, notification_prefs FROM users WHERE id = ANY($1::bigint[])", list(set(user_ids))
    )
    return {r["id"]: merge_notification_prefs(r["notification_prefs"]) for r in rows}


async def get_settings_for_update_txn(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    """The user's settings, row-locked for a change."""
    return await conn.fetchrow(
        "SELECT id, is_private, show_presence, notification_prefs FROM users WHERE id = $1 FOR UPDATE", user_id
    )


async def update_settings_txn(conn: asyncpg.Connection, user_id: int, *, is_private: bool | None,
                              show_presence: bool | None, notification_prefs: dict) -> asyncpg.Record:
    """Store settings (None leaves a flag as it is; the preferences are stored whole)."""
    return await conn.fetchrow(
        "UPDATE users SET is_private = coalesce($2, is_private), show_presence = coalesce($3, show_presence),"
        " notification_prefs = $4 WHERE id = $1 RETURNING id, is_private, show_presence, notification_prefs",
        user_id, is_private, show_presence, notification_prefs,
    )


async def deactivate_txn(conn: asyncpg.Connection, user_id: int) -> None:
    """Mark an account inactive: it can no longer log in or be seen."""
    await conn.execute("UPDATE users SET is_active = false WHERE id = $1", user_id)


# ---------------------------------------------------------------- reading other users



def like_prefix(text: str) -> str:
    """A LIKE pattern matching what starts with `text` (its own % and _ taken literally)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _by_name(first: int, also: str = "") -> str:
    """The WHERE tail and order of a search by name, its parameters numbered from `first`: the LIKE
    pattern a username, full name or a word of it starts with (NULL: all), the lower-cased
    username to go on after (NULL: from the first), how many rows; `also`, more conditions."""
    q, after, limit = (f"${first + i}" for i in range(3))
    return (f" ({q}::text IS NULL OR lower(u.username) LIKE {q} OR lower(u.full_name) LIKE {q}"
            f"      OR lower(u.full_name) LIKE '% ' || {q})"
            f" AND ({after}::text IS NULL OR lower(u.username) > {after}) {also}"
            f" ORDER BY lower(u.username) LIMIT {limit}")


async def search_users(conn: asyncpg.Pool | asyncpg.Connection, viewer: int, prefix: str | None,
                       after_username: str | None, limit: int) -> list[asyncpg.Record]:
    """Active users whose username, full name or a word of it starts with `prefix` (any case),
    by username, only those the viewer may be shown (storage.visibility); up to limit + 1 rows."""
    pattern = like_prefix(prefix.lower()) if prefix else None
    return await conn.fetch(
        f"SELECT {graph.SUMMARY_COLUMNS}, lower(u.username) AS sort_key FROM users u"
        " WHERE u.is_active AND" + _by_name(2, also="AND user_shown($1, u.id)"),
        viewer, pattern, after_username, limit + 1,
    )


async def search_accounts(conn: asyncpg.Pool | asyncpg.Connection, prefix: str | None, after_username: str | None,
                          limit: int) -> list[asyncpg.Record]:
    """search_users as moderators search: every account, suspended and deactivated ones too, with
    its role and standing (the moderator's own blocks hide nothing here); up to limit + 1 rows."""
    pattern = like_prefix(prefix.lower()) if prefix else None
    return await conn.fetch(
        "SELECT u.id, u.username, u.full_name, u.role, u.is_active, u.is_verified, u.suspended_at, u.suspended_until,"
        " u.suspension_reason, lower(u.username) AS sort_key FROM users u"
        " WHERE" + _by_name(1),
        pattern, after_username, limit + 1,
    )


async def get_profile(conn: asyncpg.Pool | asyncpg.Connection, user_id: int, viewer: int) -> asyncpg.Record | None:
    """An active user's row with the viewer's relationship flags (storage.graph.Relationship's);
    visibility is the caller's check (storage.visibility)."""
    return await conn.fetchrow(
        f"SELECT u.*, avatar_key(u.avatar_media_id) AS avatar_key, {graph.RELATIONSHIP_COLUMNS}"
        " FROM users u WHERE u.id = $1 AND u.is_active", user_id, viewer)


async def existing_active_users(conn: asyncpg.Pool | asyncpg.Connection, user_ids: Iterable[int]) -> set[int]:
    """Which of these ids are active users."""
    rows = await conn.fetch("SELECT id FROM users WHERE id = ANY($1::bigint[]) AND is_active", list(set(user_ids)))
    return {r["id"] for r in rows}


async def presence_hidden(conn: asyncpg.Pool | asyncpg.Connection, user_ids: Iterable[int]) -> set[int]:
    """Which of these users hide their presence (or do not exist, or are inactive)."""
    ids = list(set(user_ids))
    rows = await conn.fetch(
        "SELECT id FROM users WHERE id = ANY($1::bigint[]) AND is_active AND show_presence", ids)
    shown = {r["id"] for r in rows}
    return set(ids) - shown
