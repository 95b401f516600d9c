"""The `elasticsearch` search backend: one index per kind (users, posts, hashtags, locations),
written from PostgreSQL by the search consumer and rebuilt by `reindex`.

Text fields are analysed with lowercase + asciifolding; a `.prefix` sub-field holds edge n-grams
(prefixes), and a fuzzy match (AUTO, first letter fixed) takes typos. Pages are from/size offsets:
relevance scores are floats that do not survive a round trip as `search_after` keys exactly.

The official client sends `application/vnd.elasticsearch+json; compatible-with=N`, which
OpenSearch-compatible servers (osmem-server in the tests) refuse with 406; JsonNode sends plain
`application/json`, which Elasticsearch accepts too.
"""

from __future__ import annotations

import re
from typing import Any, AsyncIterator, Iterable

import asyncpg
from elastic_transport import AiohttpHttpNode, ConnectionError as TransportConnectionError, ConnectionTimeout
from elasticsearch import AsyncElasticsearch, NotFoundError
from elasticsearch.helpers import async_bulk

from storage import visibility
from storage.search import KINDS, Hit, Kind, Query, SearchUnavailable

MAX_OFFSET = 10_000  # Elasticsearch's default max_result_window
_BREAKS = re.compile(r"[_.]+")

_SETTINGS = {
    "analysis": {
        "filter": {"glint_edge": {"type": "edge_ngram", "min_gram": 1, "max_gram": 20}},
        "analyzer": {
            "glint_folded": {"type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"]},
            "glint_prefix": {"type": "custom", "tokenizer": "standard",
                             "filter": ["lowercase", "asciifolding", "glint_edge"]},
        },
    },
}
_TEXT = {"type": "text", "analyzer": "glint_folded",
         "fields": {"prefix": {"type": "text", "analyzer": "glint_prefix", "search_analyzer": "glint_folded"}}}

# kind: the searched fields with their boosts, and the mapping
FIELDS: dict[str, tuple[tuple[str, float], ...]] = {
    "users": (("username", 3.0), ("full_name", 1.0)),
    "posts": (("caption", 1.0),),
    "hashtags": (("name", 1.0),),
    "locations": (("name", 1.0),),
}
MAPPINGS: dict[str, dict[str, Any]] = {
    kind: {"dynamic": False, "properties": {
        "id": {"type": "long"},
        **({"author_id": {"type": "long"}} if kind == "posts" else {}),
        **{name: _TEXT for name, _ in fields},
    }}
    for kind, fields in FIELDS.items()
}


class JsonNode(AiohttpHttpNode):
    """The aiohttp node, sending plain application/json instead of the compatibility media type."""

    async def perform_request(self, method: str, target: str, body: bytes | None = None,
                              headers: Any = None, **kwargs: Any) -> Any:
        if headers:
            headers = headers.copy()
            for name in ("accept", "content-type"):
                if "vnd.elasticsearch" in (headers.get(name) or ""):
                    headers[name] = "application/json"
        return await super().perform_request(method, target, body=body, headers=headers, **kwargs)


def make_client(url: str) -> AsyncElasticsearch:
    """The official async client on JsonNode."""
    return AsyncElasticsearch(url, node_class=JsonNode, request_timeout=10, retry_on_timeout=True, max_retries=2)


def break_words(text: str) -> str:
    """"_" and "." split words, as in PostgreSQL's parser ("ana_photo" is found by "photo"). Done
    here, on documents and queries alike, because osmem-server ignores char_filters at index time."""
    return _BREAKS.sub(" ", text)


def _query(kind: str, query: Query, excluded: list[int]) -> dict[str, Any]:
    text = break_words(query.text)
    should: list[dict[str, Any]] = []
    for name, boost in FIELDS[kind]:
        should += [
            {"match": {name: {"query": text, "operator": "and", "boost": 2 * boost}}},
            {"match": {f"{name}.prefix": {"query": text, "operator": "and", "boost": boost}}},
            {"match": {name: {"query": text, "operator": "and", "fuzziness": "AUTO", "prefix_length": 1,
                              "boost": boost / 2}}},
        ]
    bool_: dict[str, Any] = {"should": should, "minimum_should_match": 1}
    if excluded and kind in ("users", "posts"):
        bool_["must_not"] = [{"terms": {"id" if kind == "users" else "author_id": excluded}}]
    return {"bool": bool_}


# ---------------------------------------------------------------- documents from PostgreSQL

_DOCS_SQL = {
    "users": "SELECT id, username, full_name FROM users WHERE id = ANY($1::bigint[]) AND is_active",
    "posts": "SELECT p.id, p.author_id, p.caption FROM posts p JOIN users a ON a.id = p.author_id"
             " WHERE p.id = ANY($1::bigint[]) AND a.is_active",
    "hashtags": "SELECT id, name FROM hashtags WHERE id = ANY($1::bigint[])",
    "locations": "SELECT id, name FROM locations WHERE id = ANY($1::bigint[])",
}
_ALL_IDS_SQL = {kind: f"SELECT id FROM {kind} WHERE id > $1 ORDER BY id LIMIT $2" for kind in KINDS}


def _document(kind: str, row: asyncpg.Record) -> dict[str, Any]:
    doc = dict(row)
    for name, _ in FIELDS[kind]:
        doc[name] = break_words(doc[name])
    return doc


class ElasticsearchSearch:
    """Indexes documents loaded from PostgreSQL and searches them; the index is a proposal only."""

    name = "elasticsearch"
    cursor_kinds = (int,)  # (offset,)

    def __init__(self, client: AsyncElasticsearch, pool: asyncpg.Pool, prefix: str, refresh: bool = False) -> None:
        self.client = client
        self.pool = pool
        self.prefix = prefix
        self.refresh = refresh  # make every write searchable at once (tests)
        self._ready = False

    def index(self, kind: str) -> str:
        """The index name of a kind."""
        return self.prefix + kind

    async def ensure_indexes(self) -> None:
        """Create the indexes that do not exist yet, with their analysers and mappings."""
        if self._ready:
            return
        for kind in KINDS:
            if not await self.client.indices.exists(index=self.index(kind)):
                await self.client.indices.create(index=self.index(kind), settings=_SETTINGS, mappings=MAPPINGS[kind])
        self._ready = True

    # ------------------------------------------------------------ searching

    async def search(self, kind: Kind, viewer: int, query: Query, after: list[Any] | None,
                     limit: int) -> list[Hit]:
        if after is not None and (len(after) != 1 or not isinstance(after[0], int) or isinstance(after[0], bool)
                                  or not 0 <= after[0] <= MAX_OFFSET):
            raise ValueError("bad cursor")
        offset = after[0] if after else 0
        size = min(limit, MAX_OFFSET - offset)
        if not query.words or size <= 0:
            return []
        excluded = await visibility.hidden_user_ids(self.pool, viewer) if kind in ("users", "posts") else []
        try:
            await self.ensure_indexes()
            response = await self.client.search(
                index=self.index(kind), query=_query(kind, query, excluded), from_=offset, size=size,
                sort=[{"_score": "desc"}, {"id": "desc"}], source=False, track_total_hits=False,
            )
        except NotFoundError:  # dropped by a reindex that is rebuilding it: nothing to propose yet
            self._ready = False
            return []
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise SearchUnavailable(str(exc)) from exc
        return [Hit(int(h["_id"]), (offset + i + 1,)) for i, h in enumerate(response["hits"]["hits"])]

    # ------------------------------------------------------------ writing

    async def _sync(self, kind: str, ids: list[int]) -> None:
        """Index the documents PostgreSQL has for these ids; delete the others."""
        if not ids:
            return
        await self.ensure_indexes()
        rows = await self.pool.fetch(_DOCS_SQL[kind], ids)
        found = {r["id"] for r in rows}
        actions: list[dict[str, Any]] = [
            {"_op_type": "index", "_index": self.index(kind), "_id": str(r["id"]), "_source": _document(kind, r)} for r in rows
        ] + [
            {"_op_type": "delete", "_index": self.index(kind), "_id": str(i)} for i in set(ids) - found
        ]
        # a delete of what is not indexed answers 404: that is the state wanted
        _, errors = await async_bulk(self.client, actions, refresh=self.refresh, raise_on_error=False,
                                     stats_only=False)
        failed = [e for e in errors if next(iter(e.values())).get("status") != 404]  # type: ignore[union-attr]
        if failed:
            raise RuntimeError(f"search indexing failed: {failed[:3]}")

    async def sync_users(self, user_ids: Iterable[int]) -> None:
        await self._sync("users", list(set(user_ids)))

    async def sync_posts(self, post_ids: Iterable[int]) -> None:
        ids = list(set(post_ids))
        if not ids:
            return
        await self._sync("posts", ids)
        tags = await self.pool.fetch("SELECT DISTINCT hashtag_id FROM post_hashtags WHERE post_id = ANY($1::bigint[])", ids)
        await self._sync("hashtags", [r["hashtag_id"] for r in tags])
        places = await self.pool.fetch(
            "SELECT DISTINCT location_id FROM posts WHERE id = ANY($1::bigint[]) AND location_id IS NOT NULL", ids)
        await self._sync("locations", [r["location_id"] for r in places])

    async def sync_author_posts(self, author_id: int) -> None:
        rows = await self.pool.fetch("SELECT id FROM posts WHERE author_id = $1", author_id)
        await self._sync("posts", [r["id"] for r in rows])

    # ------------------------------------------------------------ rebuilding

    async def count(self, kind: str) -> int:
        """How many rows of a kind PostgreSQL holds (for a progress bar)."""
        return await self.pool.fetchval(f"SELECT count(*) FROM {kind}")

    async def reindex(self, kind: str, batch: int = 1000) -> AsyncIterator[int]:
        """Drop and rebuild one index from PostgreSQL in batches; yields each batch's size."""
        try:
            await self.client.indices.delete(index=self.index(kind))
        except NotFoundError:
            pass
        await self.client.indices.create(index=self.index(kind), settings=_SETTINGS, mappings=MAPPINGS[kind])
        after = 0
        while True:
            ids = [r["id"] for r in await self.pool.fetch(_ALL_IDS_SQL[kind], after, batch)]
            if not ids:
                break
            await self._sync(kind, ids)
            after = ids[-1]
            yield len(ids)
        await self.client.indices.refresh(index=self.index(kind))

    async def ping(self) -> None:
        """Raise unless the cluster answers (the readiness check)."""
        await self.client.info()

    async def close(self) -> None:
        await self.client.close()
