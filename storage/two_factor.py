"""Two-factor rows: the (encrypted) TOTP secret of an account, the step of its last accepted code,
and its hashed single-use recovery codes."""

from __future__ import annotations

import asyncpg

Conn = asyncpg.Pool | asyncpg.Connection


async def get(conn: Conn, user_id: int) -> asyncpg.Record | None:
    """The account's two-factor row (confirmed or still being set up)."""
    return await conn.fetchrow("SELECT * FROM two_factor WHERE user_id = $1", user_id)


async def is_enabled(conn: Conn, user_id: int) -> bool:
    """Whether the account has confirmed two-factor."""
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM two_factor WHERE user_id = $1 AND confirmed_at IS NOT NULL)", user_id
    )


async def start_setup(conn: Conn, user_id: int, sealed_secret: bytes) -> bool:
    """Store a new unconfirmed secret (replacing an unconfirmed one); False if two-factor is on."""
    return await conn.fetchval(
        "INSERT INTO two_factor (user_id, secret) VALUES ($1, $2)"
        " ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, last_step = 0, created_at = now()"
        "   WHERE two_factor.confirmed_at IS NULL"
        " RETURNING true",
        user_id, sealed_secret,
    ) is not None


async def accept_step(conn: Conn, user_id: int, step: int) -> bool:
    """Record that a code of `step` was accepted; False if one of this or a later step already was
    (a replay)."""
    return await conn.fetchval(
        "UPDATE two_factor SET last_step = $2 WHERE user_id = $1 AND last_step < $2 RETURNING true", user_id, step
    ) is not None


async def confirm_txn(conn: asyncpg.Connection, user_id: int, code_hashes: list[bytes]) -> bool:
    """Turn two-factor on with fresh recovery codes (any earlier ones dropped); False if it was on."""
    done = await conn.fetchval(
        "UPDATE two_factor SET confirmed_at = now() WHERE user_id = $1 AND confirmed_at IS NULL RETURNING true",
        user_id,
    )
    if done is None:
        return False
    await conn.execute("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
    await conn.executemany("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                           [(user_id, h) for h in code_hashes])
    return True


async def spend_recovery_code(conn: Conn, user_id: int, code_hash: bytes) -> bool:
    """Spend an unused recovery code; False if it is unknown or spent."""
    return await conn.fetchval(
        "UPDATE recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL"
        " RETURNING true",
        user_id, code_hash,
    ) is not None


async def disable_txn(conn: asyncpg.Connection, user_id: int) -> None:
    """Turn two-factor off: the secret and the recovery codes are deleted."""
    await conn.execute("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
    await conn.execute("DELETE FROM two_factor WHERE user_id = $1", user_id)
