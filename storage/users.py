"""Users: the rows behind accounts and logins."""

from __future__ import annotations

import asyncpg


async def create_user_txn(conn: asyncpg.Connection, username: str, email: str, password_hash: str,
                          full_name: str) -> asyncpg.Record:
    """Insert a user; raises asyncpg.UniqueViolationError naming the index when taken."""
    return await conn.fetchrow(
        "INSERT INTO users (username, email, password_hash, full_name) VALUES ($1, $2, $3, $4) RETURNING *",
        username, email, password_hash, full_name,
    )


async def get_login(conn: asyncpg.Pool | asyncpg.Connection, login: str) -> asyncpg.Record | None:
    """The user a login name (username or e-mail, any case) belongs to."""
    if "@" in login:
        sql = "SELECT id, username, password_hash, is_active FROM users WHERE lower(email) = lower($1)"
    else:
        sql = "SELECT id, username, password_hash, is_active FROM users WHERE lower(username) = lower($1)"
    return await conn.fetchrow(sql, login)


async def get_user(conn: asyncpg.Pool | asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    """A user row by id."""
    return await conn.fetchrow("SELECT * FROM users WHERE id = $1", user_id)


async def set_password_hash(conn: asyncpg.Pool | asyncpg.Connection, user_id: int, password_hash: str) -> None:
    """Replace a stored password hash (after a parameter upgrade)."""
    await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)


async def touch_active(conn: asyncpg.Pool | asyncpg.Connection, user_id: int) -> None:
    """Record that the user was active now (feeds fan out only to recently active users)."""
    await conn.execute(
        "UPDATE users SET last_active_at = now() WHERE id = $1 AND last_active_at < now() - interval '1 hour'",
        user_id,
    )
