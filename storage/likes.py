"""Likes of posts and of comments: a like table keyed by the liked row and the user, and the
`like_count` of the liked row that moves with it (only when a like is made or taken back)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Likes:
    """The likes in `table` (its `column` the liked row's id in `counted`, with user_id)."""

    table: str
    column: str
    counted: str

    async def like_txn(self, conn: asyncpg.Connection, liked_id: int, user_id: int) -> bool:
        """Like it; True if this made a new like (the count moves only then)."""
        inserted = await conn.fetchval(
            f"INSERT INTO {self.table} ({self.column}, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
            liked_id, user_id,
        )
        if inserted:
            await conn.execute(f"UPDATE {self.counted} SET like_count = like_count + 1 WHERE id = $1", liked_id)
        return bool(inserted)

    async def unlike_txn(self, conn: asyncpg.Connection, liked_id: int, user_id: int) -> bool:
        """Take the like back; True if there was one."""
        deleted = await conn.fetchval(
            f"DELETE FROM {self.table} WHERE {self.column} = $1 AND user_id = $2 RETURNING true", liked_id, user_id)
        if deleted:
            await conn.execute(f"UPDATE {self.counted} SET like_count = like_count - 1 WHERE id = $1", liked_id)
        return bool(deleted)
