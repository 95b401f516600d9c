"""The `postgres` search backend: full text (the glint_search configuration: unaccent, then
simple) for prefixes, trigram word similarity for typos, both on columns PostgreSQL generates
(migration 0006). Nothing to index: the sync_* verbs do nothing.

Score: ts_rank of the prefix query, plus the trigram word similarity, plus a bonus when the name
(username, hashtag, place) is the query or starts with it. Pages are keyset on (score, id); the
score is recomputed from the same rows, so the comparison is exact.
"""

from __future__ import annotations

from typing import Any, Iterable

import asyncpg

from storage.search import Hit, Kind, Query, like_prefix, tsquery_text

# $1 tsquery text, $2 the query, $3 its LIKE prefix pattern, $4/$5 the cursor (score, id), $6 the
# limit, $7 the viewer (only where visibility is decided in SQL).
WORD_SIMILARITY = 0.5  # how alike a word of the text and the query must be for a typo to match

_TEXT = "to_tsquery('glint_search', $1)"
_FOLDED = "glint_fold($2)"


def _name_bonus(name: str) -> str:
    return (f"CASE WHEN glint_fold({name}) = {_FOLDED} THEN 2.0"
            f" WHEN glint_fold({name}) LIKE glint_fold($3) THEN 1.0 ELSE 0.0 END")


def _sql(table: str, name: str | None, joins: str = "", where: str = "") -> str:
    bonus = _name_bonus(name) if name else "CASE WHEN t.search_text LIKE glint_fold($3) THEN 0.5 ELSE 0.0 END"
    return (
        "SELECT id, score FROM ("
        f" SELECT t.id, (ts_rank(t.search_tsv, {_TEXT}) + word_similarity({_FOLDED}, t.search_text) + {bonus})::float8 AS score"
        f" FROM {table} t {joins}"
        f" WHERE (t.search_tsv @@ {_TEXT} OR {_FOLDED} <% t.search_text) {where}"
        ") s WHERE ($4::float8 IS NULL OR (s.score, s.id) < ($4, $5::bigint))"
        " ORDER BY s.score DESC, s.id DESC LIMIT $6"
    )


_NOT_BLOCKED = ("NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.blocker_id = $7 AND b.blocked_id = {u})"
                " OR (b.blocker_id = {u} AND b.blocked_id = $7))")

SQL: dict[str, tuple[str, bool]] = {  # kind: (statement, takes the viewer)
    "users": (_sql("users", "t.username", where="AND t.is_active AND " + _NOT_BLOCKED.format(u="t.id")), True),
    "posts": (_sql(
        "posts", None, joins="JOIN users a ON a.id = t.author_id",
        where="AND a.is_active AND " + _NOT_BLOCKED.format(u="a.id")
              + " AND (NOT a.is_private OR a.id = $7 OR EXISTS (SELECT 1 FROM follows f"
                " WHERE f.follower_id = $7 AND f.followee_id = a.id))"), True),
    "hashtags": (_sql("hashtags", "t.name",
                      where="AND EXISTS (SELECT 1 FROM post_hashtags ph WHERE ph.hashtag_id = t.id)"), False),
    "locations": (_sql("locations", "t.name",
                       where="AND EXISTS (SELECT 1 FROM posts p WHERE p.location_id = t.id)"), False),
}


def check_after(after: list[Any] | None) -> tuple[float | None, int | None]:
    """(score, id) from a cursor; ValueError unless it is [number, integer]."""
    if after is None:
        return None, None
    if (len(after) != 2 or not isinstance(after[0], (int, float)) or isinstance(after[0], bool)
            or not isinstance(after[1], int) or isinstance(after[1], bool) or not 0 < after[1] < 2**63):
        raise ValueError("bad cursor")
    return float(after[0]), after[1]


class PostgresSearch:
    """Searches PostgreSQL directly; the visibility rules are part of each statement."""

    name = "postgres"
    cursor_arity = 2  # (score, id)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def search(self, kind: Kind, viewer: int, query: Query, after: list[Any] | None,
                     limit: int) -> list[Hit]:
        score, after_id = check_after(after)
        if not query.words:
            return []
        sql, takes_viewer = SQL[kind]
        args: list[Any] = [tsquery_text(query), query.text, like_prefix(query.text), score, after_id, limit]
        if takes_viewer:
            args.append(viewer)
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            # the default (0.6) misses one-letter typos in short words; SET LOCAL ends with the transaction
            await conn.execute(f"SET LOCAL pg_trgm.word_similarity_threshold = {WORD_SIMILARITY}")
            rows = await conn.fetch(sql, *args)
        return [Hit(r["id"], (r["score"], r["id"])) for r in rows]

    async def sync_users(self, user_ids: Iterable[int]) -> None:
        """Nothing to do: the columns are generated."""

    async def sync_posts(self, post_ids: Iterable[int]) -> None:
        """Nothing to do: the columns are generated."""

    async def sync_author_posts(self, author_id: int) -> None:
        """Nothing to do: the columns are generated."""

    async def close(self) -> None:
        """The pool belongs to the app."""
