"""The social graph: follows, follow requests, blocks, mutes and the lists of them. Who may see
whom because of these edges is storage.visibility's question, not this module's."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

import asyncpg
import msgspec

Conn = asyncpg.Connection | asyncpg.Pool


# ---------------------------------------------------------------- the viewer's relationship to a user


# The viewer's edges to an account, as its profile shows them (no docstring: it would become the
# OpenAPI schema's description). A new rule users set that the profile shows is a field here and
# its column in _RELATIONSHIP.
class Relationship(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    following: bool
    followed_by: bool
    requested: bool
    blocking: bool
    muting: bool  # the viewer mutes this account (only the muter ever sees it true)


# each Relationship flag as a column over the viewer ($2) and the user row `u`
_RELATIONSHIP = {
    "following": "EXISTS (SELECT 1 FROM follows WHERE follower_id = $2 AND followee_id = u.id)",
    "followed_by": "EXISTS (SELECT 1 FROM follows WHERE follower_id = u.id AND followee_id = $2)",
    "requested": "EXISTS (SELECT 1 FROM follow_requests WHERE requester_id = $2 AND target_id = u.id)",
    "blocking": "EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $2 AND blocked_id = u.id)",
    "muting": "muted_by($2, u.id)",
}
assert set(_RELATIONSHIP) == set(Relationship.__struct_fields__)
RELATIONSHIP_COLUMNS = ", ".join(f"{sql} AS {name}" for name, sql in _RELATIONSHIP.items())


def relationship_of(row: asyncpg.Record) -> Relationship:
    """The Relationship of a row selected with RELATIONSHIP_COLUMNS."""
    return Relationship(**{name: row[name] for name in Relationship.__struct_fields__})


# ---------------------------------------------------------------- mutes: silent and one-way

async def add_mute(conn: Conn, muter: int, muted: int, stories: bool) -> bool:
    """Mute (or change whether the mute covers stories); True if something changed."""
    return bool(await conn.fetchval(
        "INSERT INTO mutes (muter_id, muted_id, stories) VALUES ($1, $2, $3)"
        " ON CONFLICT (muter_id, muted_id) DO UPDATE SET stories = excluded.stories"
        " WHERE mutes.stories IS DISTINCT FROM excluded.stories RETURNING true",
        muter, muted, stories,
    ))


async def remove_mute(conn: Conn, muter: int, muted: int) -> bool:
    """Unmute; True if there was a mute."""
    return bool(await conn.fetchval(
        "DELETE FROM mutes WHERE muter_id = $1 AND muted_id = $2 RETURNING true", muter, muted
    ))


# ---------------------------------------------------------------- changing the graph
#
# Every transaction that changes the edges between users starts with lock_users_txn on the users
# involved: row locks taken in id order, so two transactions over the same users queue instead of
# deadlocking, a follow never races a block or a switch to public, and the counters below (changed
# only when an edge really appeared or disappeared) stay equal to the rows.


async def lock_users_txn(conn: asyncpg.Connection, user_ids: Iterable[int]) -> dict[int, asyncpg.Record]:
    """Inside a transaction: lock these users' rows in id order; {id: (id, is_private, is_active)}
    for those that exist. NO KEY UPDATE, the lock an UPDATE of the counters takes anyway: it does not
    conflict with the KEY SHARE locks other features' foreign keys to users take."""
    rows = await conn.fetch(
        "SELECT id, is_private, is_active FROM users WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE",
        sorted(set(user_ids)),
    )
    return {r["id"]: r for r in rows}


async def follows(conn: Conn, follower: int, followee: int) -> bool:
    """Does follower follow followee?"""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $2)", follower, followee
    ))


async def _count_follows_txn(conn: asyncpg.Connection, followers: list[int], followees: list[int], delta: int) -> None:
    """Move following_count of each follower and followers_count of each followee (repeats add up)
    by delta; the rows are already locked, in id order, by lock_users_txn."""
    await conn.execute(
        "UPDATE users u SET following_count = following_count + $2 * c.n"
        " FROM (SELECT id, count(*) AS n FROM unnest($1::bigint[]) AS id GROUP BY id) c WHERE u.id = c.id",
        followers, delta,
    )
    await conn.execute(  # an account reaching the celebrity floor is listed by a trigger (migration 0020)
        "UPDATE users u SET followers_count = followers_count + $2 * c.n"
        " FROM (SELECT id, count(*) AS n FROM unnest($1::bigint[]) AS id GROUP BY id) c WHERE u.id = c.id",
        followees, delta,
    )


async def add_follow_txn(conn: asyncpg.Connection, follower: int, followee: int) -> bool:
    """Inside a transaction holding both users' locks: make the edge; True if it is new."""
    created = await conn.fetchval(
        "INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        follower, followee,
    )
    if created:
        await _count_follows_txn(conn, [follower], [followee], 1)
    return bool(created)


async def remove_follows_txn(conn: asyncpg.Connection, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inside a transaction holding the users' locks: delete these (follower, followee) edges; the
    ones that existed."""
    rows = await conn.fetch(
        "DELETE FROM follows f USING unnest($1::bigint[], $2::bigint[]) AS p(follower, followee)"
        " WHERE f.follower_id = p.follower AND f.followee_id = p.followee RETURNING f.follower_id, f.followee_id",
        [a for a, _ in pairs], [b for _, b in pairs],
    )
    removed = [(r["follower_id"], r["followee_id"]) for r in rows]
    if removed:
        await _count_follows_txn(conn, [a for a, _ in removed], [b for _, b in removed], -1)
    return removed


async def add_follow_request_txn(conn: asyncpg.Connection, requester: int, target: int) -> bool:
    """Record a request to follow a private account; True if it is new."""
    return bool(await conn.fetchval(
        "INSERT INTO follow_requests (requester_id, target_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        requester, target,
    ))


async def remove_follow_requests_txn(conn: asyncpg.Connection, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Delete these (requester, target) requests; the ones that existed."""
    rows = await conn.fetch(
        "DELETE FROM follow_requests r USING unnest($1::bigint[], $2::bigint[]) AS p(requester, target)"
        " WHERE r.requester_id = p.requester AND r.target_id = p.target RETURNING r.requester_id, r.target_id",
        [a for a, _ in pairs], [b for _, b in pairs],
    )
    return [(r["requester_id"], r["target_id"]) for r in rows]


async def pending_requesters(conn: Conn, target: int) -> list[int]:
    """Who asks to follow target."""
    return [r["requester_id"] for r in await conn.fetch(
        "SELECT requester_id FROM follow_requests WHERE target_id = $1", target
    )]


async def approve_all_requests_txn(conn: asyncpg.Connection, target: int) -> list[int]:
    """Inside a transaction holding target's and the requesters' locks: turn every pending request
    into a follow; the requesters whose follow is new."""
    rows = await conn.fetch(
        "WITH taken AS (DELETE FROM follow_requests WHERE target_id = $1 RETURNING requester_id)"
        " INSERT INTO follows (follower_id, followee_id) SELECT requester_id, $1 FROM taken"
        " ON CONFLICT DO NOTHING RETURNING follower_id",
        target,
    )
    approved = [r["follower_id"] for r in rows]
    if approved:
        await _count_follows_txn(conn, approved, [target] * len(approved), 1)
    return approved


async def add_block_txn(conn: asyncpg.Connection, blocker: int, blocked: int) -> bool:
    """Record a block; True if it is new."""
    return bool(await conn.fetchval(
        "INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        blocker, blocked,
    ))


async def remove_block(conn: Conn, blocker: int, blocked: int) -> bool:
    """Lift a block; True if there was one. Follows are not restored."""
    return bool(await conn.fetchval(
        "DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2 RETURNING true", blocker, blocked
    ))


# ---------------------------------------------------------------- lists of edges

# (table, the column holding the list's owner, the column holding the listed user)
_EDGE_LISTS = {
    "followers": ("follows", "followee_id", "follower_id"),
    "following": ("follows", "follower_id", "followee_id"),
    "follow_requests": ("follow_requests", "target_id", "requester_id"),
    "blocks": ("blocks", "blocker_id", "blocked_id"),
    "mutes": ("mutes", "muter_id", "muted_id"),
}


# what a list shows of a user (handlers.accounts.user_summary); avatar_key: migration 0023
SUMMARY_COLUMNS = ("u.id, u.username, u.full_name, u.avatar_media_id, u.is_private, u.is_verified,"
                   " avatar_key(u.avatar_media_id) AS avatar_key")


def _edge_list_sql(table: str, owner_column: str, other_column: str) -> str:
    return (
        f"SELECT {SUMMARY_COLUMNS}, e.created_at AS edge_created_at"
        f" FROM {table} e JOIN users u ON u.id = e.{other_column}"
        f" WHERE e.{owner_column} = $1 AND u.is_active"
        "   AND ($3::timestamptz IS NULL OR (e.created_at, u.id) < ($3, $4::bigint))"
        "   AND ($2::bigint IS NULL OR user_shown($2, u.id))"
        " ORDER BY e.created_at DESC, u.id DESC LIMIT $5"
    )


_EDGE_SQL = {kind: _edge_list_sql(*parts) for kind, parts in _EDGE_LISTS.items()}


async def list_edges(conn: Conn, kind: str, owner: int, hide_blocked_for: int | None,
                     after: tuple[datetime, int] | None, limit: int) -> list[asyncpg.Record]:
    """A newest-first page of owner's followers, following, follow_requests or blocks (active users
    only, and only those `hide_blocked_for` may be shown); up to limit + 1 rows, each with
    edge_created_at for the cursor."""
    since, after_id = after if after is not None else (None, None)
    return await conn.fetch(_EDGE_SQL[kind], owner, hide_blocked_for, since, after_id, limit + 1)
