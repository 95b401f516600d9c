"""The `postgres` search backend: full text on tsvector columns PostgreSQL generates (migration
0006; the glint_search configuration runs words through unaccent, then simple), with every word
of the query matched as a prefix and, when no word starts with it (a typo), also as the vocabulary
words most like it (trigram similarity on search_words, which triggers fill). Nothing to index: sync_* do nothing.

Score: the ts_rank of that query, plus a bonus when the name (username, hashtag, place) is the
query or starts with it. Pages are keyset on (score, id); the score is
recomputed from the same rows, so the comparison is exact.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import asyncpg

from storage.search import Hit, Kind, Query, like_prefix

CORRECTIONS = 3  # vocabulary words tried per query word
MIN_SIMILARITY = 0.4  # how alike (trigrams) a vocabulary word must be to stand in for a typo
POST_CANDIDATES = 2000  # posts search ranks the newest this many matching posts

# a word that starts some vocabulary word is taken as typed (a prefix): corrections only widen the
# query (and the rows to rank) where nothing would match otherwise. Words hold no LIKE wildcards.
_CORRECTIONS_SQL = (
    "SELECT q.word AS asked, c.word FROM unnest($1::text[]) AS q(word)"
    " CROSS JOIN LATERAL (SELECT v.word FROM search_words v"
    "   WHERE v.word % glint_fold(q.word) AND v.word <> glint_fold(q.word)"
    "     AND similarity(v.word, glint_fold(q.word)) >= $2"
    "   ORDER BY similarity(v.word, glint_fold(q.word)) DESC, v.word LIMIT $3) c"
    " WHERE NOT EXISTS (SELECT 1 FROM search_words e WHERE e.word LIKE glint_fold(q.word) || '%')"
)

# Statements name their parameters (:either and so on); _numbered() turns them into $1.. in order
# of first use, so each kind passes only the ones it uses.
_ANY = "to_tsquery('glint_search', :either)"


def _sql(table: str, name: str | None, visible: str, columns: str = "t.id", candidates: int | None = None) -> str:
    """Rank the matches, then walk them best first and keep the first `limit` the viewer may see.

    The visibility test is a function call per row, dearer than the ranking, so it runs above the
    sort (the OFFSET 0 keeps the planner from pushing it below) and only until the page is full.
    With `candidates`, only the newest that many matches are ranked (a common word matches a
    fifth of all captions): they come from the GIN index or a backward scan of the primary key,
    as the planner finds cheaper, and only they are read to rank."""
    # one ts_rank (a second one, or folding every matched caption, costs more than the whole query)
    bonus = (f"CASE WHEN glint_fold({name}) = glint_fold(:text) THEN 2.0"
             f" WHEN glint_fold({name}) LIKE glint_fold(:like) THEN 1.0 ELSE 0.0 END") if name else "0.0"
    source = (f"(SELECT {columns}, t.search_tsv FROM {table} t WHERE t.search_tsv @@ {_ANY}"
              f" ORDER BY t.id DESC LIMIT {candidates}) t" if candidates else f"{table} t WHERE t.search_tsv @@ {_ANY}")
    return (
        "SELECT id, score FROM ("
        " SELECT * FROM ("
        f"  SELECT {columns}, (ts_rank(t.search_tsv, {_ANY}) + {bonus})::float8 AS score FROM {source}"
        " ) s WHERE (:score::float8 IS NULL OR (s.score, s.id) < (:score, :after::bigint))"
        " ORDER BY s.score DESC, s.id DESC OFFSET 0"
        f") t WHERE {visible} ORDER BY t.score DESC, t.id DESC LIMIT :limit"
    )


def _numbered(sql: str) -> tuple[str, list[str]]:
    """The statement with :names replaced by $n, and the names in parameter order."""
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"(?<!:):([a-z]+)", number, sql), names


# the visibility policy's SQL functions (migration 0010, storage.visibility): a hashtag or a place
# is found only through a post the viewer may see
SQL: dict[str, tuple[str, list[str]]] = {kind: _numbered(sql) for kind, sql in {
    "users": _sql("users", "t.username", "user_shown(:viewer, t.id)"),
    "posts": _sql("posts", None, "visible_to(:viewer, t.author_id)", "t.id, t.author_id",
                  candidates=POST_CANDIDATES),
    "hashtags": _sql("hashtags", "t.name", "EXISTS (SELECT 1 FROM post_hashtags ph JOIN posts p"
                     " ON p.id = ph.post_id WHERE ph.hashtag_id = t.id AND visible_to(:viewer, p.author_id))"),
    "locations": _sql("locations", "t.name", "EXISTS (SELECT 1 FROM posts p"
                      " WHERE p.location_id = t.id AND visible_to(:viewer, p.author_id))"),
}.items()}


def check_after(after: list[Any] | None) -> tuple[float | None, int | None]:
    """(score, id) from a cursor; ValueError unless it is [number, integer]."""
    if after is None:
        return None, None
    if (len(after) != 2 or not isinstance(after[0], (int, float)) or isinstance(after[0], bool)
            or not isinstance(after[1], int) or isinstance(after[1], bool) or not 0 < after[1] < 2**63):
        raise ValueError("bad cursor")
    return float(after[0]), after[1]


def _lexeme(word: str) -> str:
    """A word quoted for to_tsquery (vocabulary words may hold '.', '-' and the like)."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery_text(words: tuple[str, ...], corrections: dict[str, list[str]]) -> str:
    """For to_tsquery: every word, as a prefix or as one of its corrections."""
    return " & ".join("(" + " | ".join([f"{_lexeme(w)}:*", *map(_lexeme, corrections.get(w, []))]) + ")"
                      for w in words)


class PostgresSearch:
    """Searches PostgreSQL directly; the visibility rules are part of each statement."""

    name = "postgres"
    cursor_kinds = (float, int)  # (score, id)

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def corrections(self, words: tuple[str, ...]) -> dict[str, list[str]]:
        """For each word, the vocabulary words most like it (best first)."""
        rows = await self.pool.fetch(_CORRECTIONS_SQL, list(words), MIN_SIMILARITY, CORRECTIONS)
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["asked"], []).append(r["word"])
        return out

    async def search(self, kind: Kind, viewer: int, query: Query, after: list[Any] | None,
                     limit: int) -> list[Hit]:
        score, after_id = check_after(after)
        if not query.words:
            return []
        sql, names = SQL[kind]
        values = {"either": tsquery_text(query.words, await self.corrections(query.words)), "text": query.text,
                  "like": like_prefix(query.text), "score": score, "after": after_id, "limit": limit, "viewer": viewer}
        args = [values[name] for name in names]
        rows = await self.pool.fetch(sql, *args)
        return [Hit(r["id"], (r["score"], r["id"])) for r in rows]

    async def sync_users(self, user_ids: Iterable[int]) -> None:
        """Nothing to do: the columns are generated."""

    async def sync_posts(self, post_ids: Iterable[int]) -> None:
        """Nothing to do: the columns are generated."""

    async def sync_author_posts(self, author_id: int) -> None:
        """Nothing to do: the columns are generated."""

    async def close(self) -> None:
        """The pool belongs to the app."""
