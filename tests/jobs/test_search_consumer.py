"""The search consumer against the Elasticsearch backend (osmem-server): events become documents
read from PostgreSQL, redelivered and out-of-order events leave the index as PostgreSQL has it, and
`glint search reindex` rebuilds every index from PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import pytest

from jobs.search import SearchConsumer
from storage.outbox import Event
from storage.search import KINDS, parse_query
from storage.search.elastic import ElasticsearchSearch, make_client
from storage.search.postgres import PostgresSearch

_prefixes = itertools.count(1)


@pytest.fixture
async def backend(stack_env, pool):
    """An Elasticsearch backend on the session's osmem, in indexes of its own."""
    prefix = f"glint-consumer-{os.getpid()}-{next(_prefixes)}-"
    es = ElasticsearchSearch(make_client(stack_env["GLINT_ELASTICSEARCH_URL"]), pool, prefix, refresh=True)
    yield es
    await es.client.indices.delete(index=prefix + "*", ignore_unavailable=True)
    await es.close()


def event(topic: str, type_: str, **payload: object) -> Event:
    return Event(event_id=uuid.uuid4(), topic=topic, type=type_, key="1",
                 payload={k: str(v) for k, v in payload.items()}, created_at=datetime.now(timezone.utc))


async def make_user(pool, username: str, full_name: str = "") -> int:
    return await pool.fetchval(
        "INSERT INTO users (username, email, password_hash, full_name) VALUES ($1, $1 || '@example.com', 'x', $2)"
        " RETURNING id", username, full_name)


async def make_post(pool, author: int, caption: str, tags: list[str] = (), place: str | None = None) -> int:
    location = None
    if place:
        location = await pool.fetchval(
            "INSERT INTO locations (name) VALUES ($1) ON CONFLICT (lower(name), coalesce(lat, 'NaN'::double precision),"
            " coalesce(lng, 'NaN'::double precision)) DO UPDATE SET name = excluded.name RETURNING id", place)
    post = await pool.fetchval("INSERT INTO posts (author_id, caption, location_id) VALUES ($1, $2, $3) RETURNING id",
                               author, caption, location)
    for tag in tags:
        tag_id = await pool.fetchval("INSERT INTO hashtags (name) VALUES ($1) ON CONFLICT (name)"
                                     " DO UPDATE SET name = excluded.name RETURNING id", tag)
        await pool.execute("INSERT INTO post_hashtags (hashtag_id, post_id) VALUES ($1, $2)", tag_id, post)
    return post


async def ids(backend, kind: str, q: str, viewer: int = 1) -> list[int]:
    return [hit.id for hit in await backend.search(kind, viewer, parse_query(q), None, 50)]


async def indexed_count(backend, kind: str) -> int:
    return (await backend.client.count(index=backend.index(kind)))["count"]


async def test_events_index_users_posts_hashtags_and_locations_from_postgres(backend, pool):
    consumer = SearchConsumer(backend)
    ana = await make_user(pool, "anastasia", "Anastasia Ivanova")
    post = await make_post(pool, ana, "golden hour #photography", ["photography"], place="Zürich")
    await consumer.handle(event("accounts", "user_registered", user_id=ana, username="anastasia"))
    await consumer.handle(event("posts", "post_created", post_id=post, author_id=ana))
    assert await ids(backend, "users", "ana") == [ana]
    assert await ids(backend, "posts", "golden") == [post]
    assert len(await ids(backend, "hashtags", "photgraphy")) == 1
    assert len(await ids(backend, "locations", "zurich")) == 1
    await consumer.handle(event("posts", "post_liked", post_id=post, author_id=ana, user_id=ana))  # not search's
    await consumer.handle(event("accounts", "unknown_kind"))


async def test_redelivered_and_out_of_order_events_leave_the_index_as_postgres_has_it(backend, pool):
    consumer = SearchConsumer(backend)
    author = await make_user(pool, "kayaker")
    post = await make_post(pool, author, "kayak trip")
    created = event("posts", "post_created", post_id=post, author_id=author)
    await consumer.handle(created)
    await consumer.handle(created)  # redelivered: still one document
    assert await indexed_count(backend, "posts") == 1
    await pool.execute("DELETE FROM posts WHERE id = $1", post)
    await consumer.handle(event("posts", "post_deleted", post_id=post, author_id=author))
    await consumer.handle(event("posts", "post_deleted", post_id=post, author_id=author))  # a second delete is fine
    await consumer.handle(created)  # a late post_created for a deleted post indexes nothing
    assert await ids(backend, "posts", "kayak") == []


async def test_a_caption_edit_reindexes_the_post(backend, pool):
    consumer = SearchConsumer(backend)
    author = await make_user(pool, "writer")
    post = await make_post(pool, author, "first words")
    await consumer.handle(event("posts", "post_created", post_id=post, author_id=author))
    await pool.execute("UPDATE posts SET caption = 'second thoughts' WHERE id = $1", post)
    await consumer.handle(event("posts", "post_updated", post_id=post, author_id=author))
    assert await ids(backend, "posts", "second") == [post]
    assert await ids(backend, "posts", "first") == []


async def test_deactivation_removes_the_user_and_their_posts(backend, pool):
    consumer = SearchConsumer(backend)
    user = await make_user(pool, "quitter")
    posts = [await make_post(pool, user, f"farewell {i}") for i in range(3)]
    await consumer.handle(event("accounts", "user_registered", user_id=user, username="quitter"))
    for post in posts:
        await consumer.handle(event("posts", "post_created", post_id=post, author_id=user))
    assert len(await ids(backend, "posts", "farewell")) == 3
    await pool.execute("UPDATE users SET is_active = false WHERE id = $1", user)
    await consumer.handle(event("accounts", "user_deactivated", user_id=user))
    assert await ids(backend, "users", "quitter") == []
    assert await ids(backend, "posts", "farewell") == []


async def test_graph_events_refresh_both_users_documents(backend, pool):
    consumer = SearchConsumer(backend)
    a, b = await make_user(pool, "first_user"), await make_user(pool, "second_user")
    await pool.execute("UPDATE users SET full_name = 'Renamed Person' WHERE id = $1", b)  # profile edits emit nothing
    await consumer.handle(event("accounts", "follow_created", actor_id=a, target_id=b))
    assert set(await ids(backend, "users", "user")) == {a, b}
    assert await ids(backend, "users", "renamed") == [b]


async def test_the_postgres_backend_has_nothing_to_index(pool):
    consumer = SearchConsumer(PostgresSearch(pool))
    user = await make_user(pool, "plain")
    await consumer.handle(event("accounts", "user_registered", user_id=user, username="plain"))
    assert [h.id for h in await consumer.backend.search("users", user, parse_query("pla"), None, 10)] == [user]


async def test_reindex_command_rebuilds_every_index_from_postgres(backend, pool, stack_env, database_url):
    user = await make_user(pool, "rebuilt", "Re Built")
    stale = await make_user(pool, "stale")
    for i in range(5):
        await make_post(pool, user, f"batch post {i} #again", ["again"], place="Porto")
    await backend.sync_users([stale])
    await pool.execute("UPDATE users SET is_active = false WHERE id = $1", stale)  # no event: only a rebuild sees it
    env = {**os.environ, **stack_env, "GLINT_DATABASE_URL": database_url, "GLINT_SEARCH_BACKEND": "elasticsearch",
           "GLINT_ELASTICSEARCH_INDEX_PREFIX": backend.prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "search", "reindex", "--batch", "2", env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "posts: 100%" in err.decode()  # the tqdm progress bar
    assert {kind: await indexed_count(backend, kind) for kind in KINDS} == \
        {"users": 1, "posts": 5, "hashtags": 1, "locations": 1}
    assert await ids(backend, "posts", "batch") and await ids(backend, "users", "rebuilt") == [user]
