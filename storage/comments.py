"""Comments on posts (one level of replies) and their likes.

posts.comment_count counts every comment, replies included; comments.reply_count counts a
top-level comment's replies. Both move in the transaction that adds or removes rows.
"""

from __future__ import annotations

import asyncpg

from storage import likes

Conn = asyncpg.Connection | asyncpg.Pool

COLUMNS = ("c.id, c.post_id, c.author_id, c.parent_id, c.text, c.like_count, c.reply_count, c.created_at,"
           " u.username, u.full_name, u.is_verified, avatar_key(u.avatar_media_id) AS avatar_key")


async def get_comment(conn: Conn, comment_id: int) -> asyncpg.Record | None:
    """A comment with its post's author (post_author_id)."""
    return await conn.fetchrow(
        "SELECT c.*, p.author_id AS post_author_id FROM comments c JOIN posts p ON p.id = c.post_id WHERE c.id = $1",
        comment_id,
    )


async def create_comment_txn(conn: asyncpg.Connection, post_id: int, author_id: int, text: str,
                             parent_id: int | None) -> asyncpg.Record | None:
    """Add a comment (a reply when parent_id is a top-level comment of the same post); None when
    the post is gone."""
    row = await conn.fetchrow(
        "INSERT INTO comments (post_id, author_id, parent_id, text)"
        " SELECT id, $2, $3, $4 FROM posts WHERE id = $1 RETURNING *",
        post_id, author_id, parent_id, text,
    )
    if row is None:
        return None
    await conn.execute("UPDATE posts SET comment_count = comment_count + 1 WHERE id = $1", post_id)
    if parent_id is not None:
        await conn.execute("UPDATE comments SET reply_count = reply_count + 1 WHERE id = $1", parent_id)
    return row


async def delete_comment_txn(conn: asyncpg.Connection, comment_id: int) -> asyncpg.Record | None:
    """Delete a comment and its replies, keeping the counts exact; None when already gone."""
    row = await conn.fetchrow("DELETE FROM comments WHERE id = $1 RETURNING *", comment_id)
    if row is None:
        return None
    # the replies went by cascade: the count of the post drops by them too
    removed = 1 + (row["reply_count"] if row["parent_id"] is None else 0)
    await conn.execute("UPDATE posts SET comment_count = greatest(comment_count - $2, 0) WHERE id = $1",
                       row["post_id"], removed)
    if row["parent_id"] is not None:
        await conn.execute("UPDATE comments SET reply_count = greatest(reply_count - 1, 0) WHERE id = $1",
                           row["parent_id"])
    return row


async def list_comments(conn: Conn, post_id: int, parent_id: int | None, after_id: int | None,
                        limit: int) -> list[asyncpg.Record]:
    """Top-level comments of a post (parent_id None) or the replies to one, oldest first."""
    if parent_id is None:
        where = "c.post_id = $1 AND c.parent_id IS NULL"
        key = post_id
    else:
        where = "c.parent_id = $1"
        key = parent_id
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id"
        f" WHERE {where} AND ($2::bigint IS NULL OR c.id > $2) ORDER BY c.id LIMIT $3",
        key, after_id, limit,
    )


async def liked_by(conn: Conn, user_id: int, comment_ids: list[int]) -> set[int]:
    """Which of these comments the user likes."""
    rows = await conn.fetch("SELECT comment_id FROM comment_likes WHERE user_id = $1 AND comment_id = ANY($2::bigint[])",
                            user_id, comment_ids)
    return {r["comment_id"] for r in rows}


COMMENT_LIKES = likes.Likes("comment_likes", "comment_id", "comments")
like_comment_txn = COMMENT_LIKES.like_txn  # (conn, comment_id, user_id): True if this made a new like
unlike_comment_txn = COMMENT_LIKES.unlike_txn  # (conn, comment_id, user_id): True if there was one


async def like_count(conn: Conn, comment_id: int) -> int | None:
    """A comment's like count; None when it is gone."""
    return await conn.fetchval("SELECT like_count FROM comments WHERE id = $1", comment_id)
