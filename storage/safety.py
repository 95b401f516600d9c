"""Account safety rows: password-reset tokens (stored hashed, spent once, expiring)."""

from __future__ import annotations

import asyncpg

Conn = asyncpg.Pool | asyncpg.Connection


async def active_user_by_email(conn: Conn, email: str) -> asyncpg.Record | None:
    """The active account an e-mail address belongs to (any case)."""
    return await conn.fetchrow("SELECT id, email FROM users WHERE lower(email) = lower($1) AND is_active", email)


async def add_reset_txn(conn: asyncpg.Connection, user_id: int, token_hash: bytes, ttl_seconds: int) -> None:
    """Store a reset token (hashed) valid for ttl_seconds."""
    await conn.execute(
        "INSERT INTO password_resets (token_hash, user_id, expires_at)"
        " VALUES ($1, $2, now() + make_interval(secs => $3))",
        token_hash, user_id, float(ttl_seconds),
    )


async def reset_owner(conn: Conn, token_hash: bytes) -> asyncpg.Record | None:
    """The active user a live (unspent, unexpired) reset token is for."""
    return await conn.fetchrow(
        "SELECT u.id, u.username FROM password_resets r JOIN users u ON u.id = r.user_id"
        " WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > now() AND u.is_active",
        token_hash,
    )


async def spend_reset_txn(conn: asyncpg.Connection, token_hash: bytes) -> int | None:
    """Spend a live reset token and every other one of its user; the user id, or None when the
    token is unknown, spent or expired (a concurrent spend loses here)."""
    user_id = await conn.fetchval(
        "UPDATE password_resets SET used_at = now()"
        " WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id",
        token_hash,
    )
    if user_id is not None:
        await conn.execute("UPDATE password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", user_id)
    return user_id
