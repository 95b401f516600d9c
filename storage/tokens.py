"""Refresh tokens (PostgreSQL, stored hashed) and the Redis markers that cut off access tokens.

A login starts a token family; each refresh spends the presented token and issues the next in the
same family. Presenting a spent token means it was copied: the whole family is revoked. Access
tokens carry their family id (`sid`), and a revoked family or deactivated user is marked in Redis
for as long as an access token can live, so cutting someone off takes effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg
from redis.asyncio import Redis


def hash_token(token: str) -> bytes:
    """The stored form of a refresh token."""
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    """A fresh opaque refresh token."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Rotation:
    """The outcome of presenting a refresh token."""

    status: str  # "ok", "unknown", "expired", "revoked", "reused", "inactive"
    user_id: int | None = None
    family_id: int | None = None


async def issue(conn: asyncpg.Connection | asyncpg.Pool, user_id: int, family_id: int, token: str, ttl: int) -> None:
    """Store a new refresh token of a family."""
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4)",
        hash_token(token), family_id, user_id, datetime.now(timezone.utc) + timedelta(seconds=ttl),
    )


async def new_family_id(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """A fresh family (session) id."""
    return await conn.fetchval("SELECT next_id()")


async def rotate_txn(conn: asyncpg.Connection, token: str, next_token: str, ttl: int) -> Rotation:
    """Inside a transaction: spend `token` and store `next_token` in its family, or say why not."""
    row = await conn.fetchrow(
        "SELECT t.family_id, t.user_id, t.expires_at, t.used_at, t.revoked_at, u.is_active"
        " FROM refresh_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1 FOR UPDATE OF t",
        hash_token(token),
    )
    if row is None:
        return Rotation("unknown")
    family_id, user_id = row["family_id"], row["user_id"]
    if row["revoked_at"] is not None:
        return Rotation("revoked", user_id, family_id)
    if row["used_at"] is not None:
        await revoke_family_txn(conn, family_id)
        return Rotation("reused", user_id, family_id)
    if not row["is_active"]:
        return Rotation("inactive", user_id, family_id)
    if row["expires_at"] <= datetime.now(timezone.utc):
        return Rotation("expired", user_id, family_id)
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", hash_token(token))
    await issue(conn, user_id, family_id, next_token, ttl)
    return Rotation("ok", user_id, family_id)


async def revoke_family_txn(conn: asyncpg.Connection | asyncpg.Pool, family_id: int) -> None:
    """Revoke every token of a family."""
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL", family_id
    )


async def family_of(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> tuple[int, int] | None:
    """(family_id, user_id) of a refresh token, if it exists."""
    row = await conn.fetchrow("SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1", hash_token(token))
    return (row["family_id"], row["user_id"]) if row else None


async def revoke_all_for_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: int) -> None:
    """Revoke every refresh token a user holds."""
    await conn.execute("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", user_id)


# ------------------------------------------------------------------ Redis markers

def session_key(user_id: int, family_id: int) -> str:
    """Set while a session's access tokens must be refused."""
    return f"auth:{{{user_id}}}:revoked:{family_id}"


def inactive_key(user_id: int) -> str:
    """Set while a deactivated user's access tokens must be refused."""
    return f"auth:{{{user_id}}}:inactive"


async def mark_session_revoked(redis: Redis, user_id: int, family_id: int, ttl: int) -> None:
    """Refuse this session's access tokens from now on (they expire within ttl anyway)."""
    await redis.set(session_key(user_id, family_id), 1, ex=ttl)


async def mark_user_inactive(redis: Redis, user_id: int, ttl: int) -> None:
    """Refuse all of a user's access tokens from now on."""
    await redis.set(inactive_key(user_id), 1, ex=ttl)
