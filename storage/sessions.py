"""Sessions: one row per login (its refresh-token family), listed to their owner and revoked one by
one or all at once. Whether an access token's session may still be used is read here when the
Redis cache (storage/tokens.py) has no answer."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

Conn = asyncpg.Pool | asyncpg.Connection


async def create(conn: Conn, session_id: int, user_id: int, user_agent: str, ip: str) -> None:
    """Record a new login."""
    await conn.execute(
        "INSERT INTO sessions (id, user_id, user_agent, ip) VALUES ($1, $2, $3, $4)",
        session_id, user_id, user_agent[:512], ip[:64],
    )


@dataclass(frozen=True)
class State:
    """What PostgreSQL says of an access token's session and user."""

    session_ok: bool
    user_ok: bool

    @property
    def allowed(self) -> bool:
        return self.session_ok and self.user_ok


async def load_state(conn: Conn, user_id: int, session_id: int) -> State:
    """Is the session live (exists, is the user's, not revoked), and may its user authenticate?"""
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL) AS session_ok,"
        " may_authenticate($1) AS user_ok",
        user_id, session_id,
    )
    return State(row["session_ok"], row["user_ok"])


async def list_live(conn: Conn, user_id: int, since_seconds: int) -> list[asyncpg.Record]:
    """The user's sessions not revoked and used within `since_seconds` (a refresh token's life),
    most recently used first."""
    return await conn.fetch(
        "SELECT id, created_at, last_used_at, user_agent, ip FROM sessions"
        " WHERE user_id = $1 AND revoked_at IS NULL AND last_used_at > now() - make_interval(secs => $2)"
        " ORDER BY last_used_at DESC, id DESC LIMIT 200",
        user_id, float(since_seconds),
    )


async def is_live_own(conn: Conn, user_id: int, session_id: int) -> bool:
    """Whether the session exists, is the user's and is not revoked."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL)",
        session_id, user_id,
    )
