"""Search over users, posts, hashtags and locations, behind one interface with two backends.

`postgres` (storage.search.postgres) answers from generated tsvector/trigram columns (migration
0006), so it has nothing to index. `elasticsearch` (storage.search.elastic) keeps one index per
kind, written from PostgreSQL by the search consumer (`sync_*`) and rebuilt by `reindex`.

Either way a backend only proposes ids in relevance order; what a viewer may see is decided
afterwards, from PostgreSQL, by the functions at the bottom of this module (and render_posts for
posts), so a stale index entry never shows hidden content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Protocol

import asyncpg

from storage.graph import SUMMARY_COLUMNS

Conn = asyncpg.Connection | asyncpg.Pool
Kind = Literal["users", "posts", "hashtags", "locations"]
KINDS: tuple[Kind, ...] = ("users", "posts", "hashtags", "locations")

MAX_WORDS = 8
_WORD = re.compile(r"[^\W_]+")


class SearchUnavailable(Exception):
    """The search backend cannot be reached (a 503 for the client, never a 500)."""


@dataclass(frozen=True)
class Query:
    """What was asked: the text (without a leading # or @) and its words."""

    text: str
    words: tuple[str, ...]


def parse_query(raw: str) -> Query:
    """The query for `raw`; words are runs of letters and digits (at most MAX_WORDS)."""
    text = raw.strip().lstrip("#@").strip()
    return Query(text=text, words=tuple(_WORD.findall(text)[:MAX_WORDS]))


@dataclass(frozen=True)
class Hit:
    """One proposed result: its id and the cursor of the page that starts after it."""

    id: int
    after: tuple[Any, ...]


class SearchBackend(Protocol):
    """What the handlers and the search consumer need of a backend."""

    name: str
    cursor_kinds: tuple[type, ...]  # the type of each value a Hit's `after` holds

    async def search(self, kind: Kind, viewer: int, query: Query, after: list[Any] | None,
                     limit: int) -> list[Hit]:
        """Up to `limit` candidate ids best first, after the cursor `after` (a list from a Hit's
        `after`; ValueError if malformed). Candidates may include what the viewer may not see."""
        ...

    async def sync_users(self, user_ids: Iterable[int]) -> None:
        """Make the index agree with PostgreSQL for these users (gone or inactive: removed)."""
        ...

    async def sync_posts(self, post_ids: Iterable[int]) -> None:
        """Make the index agree with PostgreSQL for these posts, their hashtags and locations."""
        ...

    async def sync_author_posts(self, author_id: int) -> None:
        """sync_posts for every post of one author (after a deactivation)."""
        ...

    async def close(self) -> None:
        """Release the client."""
        ...


# ---------------------------------------------------------------- shared helpers


def like_prefix(text: str) -> str:
    """A LIKE pattern matching what starts with `text` (its own % and _ taken literally)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# ---------------------------------------------------------------- what a viewer may see


async def _rows_by_id(conn: Conn, sql: str, viewer: int, ids: list[int]) -> dict[int, asyncpg.Record]:
    """The rows `sql` ($1 the viewer, $2 the ids) gives for these ids, by id; no ids, no query."""
    if not ids:
        return {}
    return {r["id"]: r for r in await conn.fetch(sql, viewer, ids)}


async def visible_users(conn: Conn, viewer: int, user_ids: list[int]) -> dict[int, asyncpg.Record]:
    """Of these users, those the viewer may be shown (storage.visibility)."""
    return await _rows_by_id(
        conn, f"SELECT {SUMMARY_COLUMNS} FROM users u"
        " WHERE u.id = ANY($2::bigint[]) AND user_shown($1, u.id)", viewer, user_ids)


async def hashtags_with_posts(conn: Conn, viewer: int, hashtag_ids: list[int]) -> dict[int, asyncpg.Record]:
    """Of these hashtags, those on some post the viewer may see, with id, name and post_count
    (counting only those posts)."""
    return await _rows_by_id(
        conn, "SELECT h.id, h.name, count(*) AS post_count FROM hashtags h JOIN post_hashtags ph ON ph.hashtag_id = h.id"
        " JOIN posts p ON p.id = ph.post_id"
        " WHERE h.id = ANY($2::bigint[]) AND visible_to($1, p.author_id) GROUP BY h.id", viewer, hashtag_ids)


async def locations_with_posts(conn: Conn, viewer: int, location_ids: list[int]) -> dict[int, asyncpg.Record]:
    """Of these locations, those some post the viewer may see is at, with id, name, lat, lng and
    post_count (counting only those posts)."""
    return await _rows_by_id(
        conn, "SELECT l.id, l.name, l.lat, l.lng, count(*) AS post_count FROM locations l JOIN posts p ON p.location_id = l.id"
        " WHERE l.id = ANY($2::bigint[]) AND visible_to($1, p.author_id) GROUP BY l.id", viewer, location_ids)
