"""The social graph, and the two questions every feature asks of it: may this viewer see this
owner's things, and is either of two users blocking the other. Each is answered here, once, with a
batched variant for lists."""

from __future__ import annotations

from typing import Iterable

import asyncpg

Conn = asyncpg.Connection | asyncpg.Pool


async def is_blocked_either_way(conn: Conn, a: int, b: int) -> bool:
    """Does a block b, or b block a?"""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = $1 AND blocked_id = $2)"
        " OR (blocker_id = $2 AND blocked_id = $1))", a, b,
    ))


async def blocked_either_way(conn: Conn, viewer: int, others: Iterable[int]) -> set[int]:
    """Which of `others` block the viewer or are blocked by the viewer."""
    ids = list(set(others))
    if not ids:
        return set()
    rows = await conn.fetch(
        "SELECT blocked_id AS other FROM blocks WHERE blocker_id = $1 AND blocked_id = ANY($2::bigint[])"
        " UNION SELECT blocker_id FROM blocks WHERE blocked_id = $1 AND blocker_id = ANY($2::bigint[])",
        viewer, ids,
    )
    return {r["other"] for r in rows}


async def can_view(conn: Conn, viewer: int | None, owner: int) -> bool:
    """May the viewer see the owner's profile content (posts, stories)? Not if either blocks the
    other, nor a private account's things unless the viewer is the owner or an approved follower."""
    if viewer == owner:
        return True
    allowed = await viewable_owners(conn, viewer, [owner])
    return owner in allowed


async def viewable_owners(conn: Conn, viewer: int | None, owners: Iterable[int]) -> set[int]:
    """The batched can_view: which of `owners` the viewer may see (existing, active users only)."""
    ids = list(set(owners))
    if not ids:
        return set()
    rows = await conn.fetch(
        """
        SELECT u.id FROM users u
        WHERE u.id = ANY($2::bigint[]) AND u.is_active
          AND ($1::bigint IS NULL OR u.id = $1 OR NOT EXISTS (
                SELECT 1 FROM blocks b WHERE (b.blocker_id = u.id AND b.blocked_id = $1)
                                          OR (b.blocker_id = $1 AND b.blocked_id = u.id)))
          AND (NOT u.is_private OR u.id = $1 OR EXISTS (
                SELECT 1 FROM follows f WHERE f.follower_id = $1 AND f.followee_id = u.id))
        """,
        viewer, ids,
    )
    return {r["id"] for r in rows}
