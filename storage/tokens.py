"""Refresh tokens (PostgreSQL, stored hashed) and the Redis cache of who may use access tokens.

A login starts a token family (a row of `sessions`, storage/sessions.py); each refresh spends the
presented token and issues the next in the same family. Presenting a spent token means it was
copied: the whole family is revoked. Access tokens carry their family id (`sid`).

PostgreSQL is the truth of whether a session and its user may still authenticate; Redis caches
both answers per session and per user ("1" allowed, "0" refused). A missing cache entry is never
read as allowed: the caller asks PostgreSQL (sessions.load_state) and fills the cache. Cutting
someone off writes "0" after commit, so it takes effect at once; if Redis loses its data, the next
request reads the truth again.
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
        "SELECT t.family_id, t.user_id, t.expires_at, t.used_at, t.revoked_at, may_authenticate(t.user_id) AS is_active"
        " FROM refresh_tokens t WHERE t.token_hash = $1 FOR UPDATE OF t",
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
    await conn.execute("UPDATE sessions SET last_used_at = now() WHERE id = $1", family_id)
    await issue(conn, user_id, family_id, next_token, ttl)
    return Rotation("ok", user_id, family_id)


async def revoke_family_txn(conn: asyncpg.Connection | asyncpg.Pool, family_id: int) -> None:
    """Revoke every token of a family, and the session it is."""
    await conn.execute(
        "WITH s AS (UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL)"
        " UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL", family_id
    )


async def family_of(conn: asyncpg.Connection | asyncpg.Pool, token: str) -> tuple[int, int] | None:
    """(family_id, user_id) of a refresh token, if it exists."""
    row = await conn.fetchrow("SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1", hash_token(token))
    return (row["family_id"], row["user_id"]) if row else None


async def revoke_all_for_user(conn: asyncpg.Connection | asyncpg.Pool, user_id: int,
                              keep_family: int | None = None) -> list[int]:
    """Revoke every refresh token and session a user holds (but `keep_family`'s); the families
    revoked now."""
    rows = await conn.fetch(
        "WITH s AS (UPDATE sessions SET revoked_at = now()"
        "           WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2 RETURNING id),"
        " t AS (UPDATE refresh_tokens SET revoked_at = now()"
        "       WHERE user_id = $1 AND revoked_at IS NULL AND family_id IS DISTINCT FROM $2)"
        " SELECT id FROM s",
        user_id, keep_family,
    )
    return [r["id"] for r in rows]


# ------------------------------------------------------------------ the Redis cache of the truth

ALLOWED, REFUSED = b"1", b"0"
# how long an "allowed" answer is trusted without asking PostgreSQL again; a revocation overwrites
# it at once, so this bounds only a revocation whose cache write failed after its commit
ALLOWED_TTL = 300


def session_key(user_id: int, family_id: int) -> str:
    """The cached state of one session ("1" usable, "0" revoked; absent: ask PostgreSQL)."""
    return f"auth:{{{user_id}}}:session:{family_id}"


def inactive_key(user_id: int) -> str:
    """The cached state of a user ("1" may authenticate, "0" deactivated, suspended or deleted)."""
    return f"auth:{{{user_id}}}:user"


async def mark_session_revoked(redis: Redis, user_id: int, family_id: int, ttl: int) -> None:
    """Refuse this session's access tokens from now on (after its revocation committed)."""
    await redis.set(session_key(user_id, family_id), REFUSED, ex=ttl)


async def mark_sessions_revoked(redis: Redis, user_id: int, family_ids: list[int], ttl: int) -> None:
    """mark_session_revoked for many sessions of a user, in one round trip."""
    if family_ids:
        async with redis.pipeline(transaction=False) as pipe:
            for family_id in family_ids:
                pipe.set(session_key(user_id, family_id), REFUSED, ex=ttl)
            await pipe.execute()


async def mark_user_inactive(redis: Redis, user_id: int, ttl: int) -> None:
    """Refuse all of a user's access tokens from now on (after the change committed)."""
    await redis.set(inactive_key(user_id), REFUSED, ex=ttl)


async def clear_user_mark(redis: Redis, user_id: int) -> None:
    """Forget the cached state of a user whose account became usable again (reactivated,
    unsuspended): the next request reads it from PostgreSQL."""
    await redis.delete(inactive_key(user_id))


async def fill_cache(redis: Redis, user_id: int, family_id: int, session_ok: bool, user_ok: bool,
                     refused_ttl: int) -> None:
    """Cache what PostgreSQL said of a session and its user. "Allowed" is written only where no
    answer is cached (NX): a revocation that committed meanwhile wrote "0", and that must win."""
    async with redis.pipeline(transaction=False) as pipe:
        for key, ok in ((session_key(user_id, family_id), session_ok), (inactive_key(user_id), user_ok)):
            if ok:
                pipe.set(key, ALLOWED, ex=ALLOWED_TTL, nx=True)
            else:
                pipe.set(key, REFUSED, ex=refused_ttl)
        await pipe.execute()
