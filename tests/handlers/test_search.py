"""Search, one suite run against both backends: postgres (generated columns) and elasticsearch
(osmem-server, documents written by the search consumer). Same data, same assertions."""

from __future__ import annotations

import itertools
import os

import pytest

from app.main import create_app
from tests.conftest import make_config, wait_for
from tests.support import new_post, user_with_token

_prefixes = itertools.count(1)


@pytest.fixture(params=["postgres", "elasticsearch"])
async def search_client(request, aiohttp_client, stack_env, database_url, redis_clean):
    """A client of the app on one search backend (each Elasticsearch run in its own indexes)."""
    from app.main import create_app
    from storage.search.elastic import make_client

    prefix = f"glint-test-{os.getpid()}-{next(_prefixes)}-"
    config = make_config(stack_env, database_url=database_url, search_backend=request.param,
                         elasticsearch_index_prefix=prefix, elasticsearch_refresh=True)
    yield await aiohttp_client(create_app(config))
    if request.param == "elasticsearch":
        es = make_client(stack_env["GLINT_ELASTICSEARCH_URL"])
        try:
            await es.indices.delete(index=prefix + "*", ignore_unavailable=True)
        finally:
            await es.close()


async def indexed(pool) -> None:
    """Wait until the search consumer has handled every account and post event."""
    await wait_for(lambda: pool.fetchval(
        "SELECT NOT EXISTS (SELECT 1 FROM outbox o WHERE o.topic IN ('accounts', 'posts') AND NOT EXISTS"
        " (SELECT 1 FROM processed_events p WHERE p.consumer = 'search' AND p.event_id = o.event_id))"))


async def find(client, headers, kind: str, q: str, **query) -> dict:
    response = await client.get(f"/api/search/{kind}/", params={"q": q, **query}, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def names(client, headers, kind: str, q: str) -> list[str]:
    """What one page shows: usernames, captions, or names."""
    key = {"users": "username", "posts": "caption", "hashtags": "name", "locations": "name"}[kind]
    return [item[key] for item in (await find(client, headers, kind, q))["results"]]


async def test_users_are_found_by_prefix_typo_and_without_accents_best_match_first(search_client, pool):
    client = search_client
    _, headers = await user_with_token(client, "viewer")
    await user_with_token(client, "anastasia", full_name="Anastasia Ivanova")
    await user_with_token(client, "ana")
    await user_with_token(client, "zoe_n", full_name="Zoë Ñandú")
    await user_with_token(client, "bob", full_name="Bob Stone")
    await user_with_token(client, "kite_surfer.pt")
    await indexed(pool)

    assert await names(client, headers, "users", "ana") == ["ana", "anastasia"]  # the exact username first
    assert await names(client, headers, "users", "anastsia") == ["anastasia"]  # a letter missing
    assert await names(client, headers, "users", "ivanva") == ["anastasia"]  # by full name, with a typo
    assert await names(client, headers, "users", "nandu") == ["zoe_n"]  # accents ignored
    assert await names(client, headers, "users", "@Zoë") == ["zoe_n"]
    assert await names(client, headers, "users", "qqqq") == []
    assert await names(client, headers, "users", "surfer") == ["kite_surfer.pt"]  # "_" and "." split words
    first = (await find(client, headers, "users", "bob"))["results"][0]
    assert set(first) == {"id", "username", "full_name", "avatar_media_id", "is_private", "is_verified",
                          "avatar_url"}


async def test_posts_are_found_by_prefix_and_typo_best_match_first(search_client, pool):
    client = search_client
    _, headers = await user_with_token(client)
    best = await new_post(client, headers, "Photography in Zürich, photography all day")
    other = await new_post(client, headers, "A walk with my camera, some photography")
    await new_post(client, headers, "Street food")
    await indexed(pool)

    found = await find(client, headers, "posts", "photo")
    assert [p["id"] for p in found["results"]] == [best["id"], other["id"]]  # the word twice ranks first
    assert found["results"][0]["media"] and found["results"][0]["author"]["username"]  # rendered as posts are
    found = await find(client, headers, "posts", "photgraphy")  # a letter missing
    assert {p["id"] for p in found["results"]} == {best["id"], other["id"]}
    assert [p["id"] for p in (await find(client, headers, "posts", "zurich"))["results"]] == [best["id"]]
    assert await names(client, headers, "posts", "phot zur") == ["Photography in Zürich, photography all day"]
    assert await names(client, headers, "posts", "stre") == ["Street food"]


async def test_pages_walk_every_result_once(search_client, pool):
    client = search_client
    _, headers = await user_with_token(client)
    posted = {(await new_post(client, headers, f"sunset number {i}"))["id"] for i in range(5)}
    await indexed(pool)

    seen: list[str] = []
    page = await find(client, headers, "posts", "sunset", limit=2)
    pages = 1
    while page["next"]:
        assert len(page["results"]) == 2
        seen += [p["id"] for p in page["results"]]
        response = await client.get(page["next"], headers=headers)
        assert response.status == 200, await response.text()
        page = await response.json()
        pages += 1
    seen += [p["id"] for p in page["results"]]
    assert sorted(seen) == sorted(posted) and pages == 3


async def test_hashtags_come_with_post_counts_and_locations_are_found(search_client, pool):
    client = search_client
    _, headers = await user_with_token(client)
    await new_post(client, headers, "#photography at dusk", location={"name": "Zürich Hauptbahnhof"})
    await new_post(client, headers, "more #Photography #photo")
    gone = await new_post(client, headers, "#photowalk", location={"name": "Lisbon"})
    assert (await client.delete(f"/api/posts/{gone['id']}/", headers=headers)).status == 204
    await indexed(pool)

    tags = (await find(client, headers, "hashtags", "#photgraphy"))["results"]
    assert [(t["name"], t["post_count"]) for t in tags] == [("photography", 2)]
    tags = (await find(client, headers, "hashtags", "phot"))["results"]
    assert {(t["name"], t["post_count"]) for t in tags} == {("photography", 2), ("photo", 1)}  # not the unused one
    assert tags[0]["name"] == "photo"  # the exact name first
    places = (await find(client, headers, "locations", "zurich haupt"))["results"]
    assert [(p["name"], p["post_count"]) for p in places] == [("Zürich Hauptbahnhof", 1)]
    assert await names(client, headers, "locations", "lisbon") == []  # its only post is deleted


async def test_search_never_shows_what_the_viewer_may_not_see(search_client, pool):
    client = search_client
    viewer, headers = await user_with_token(client, "viewer")
    blocked, blocked_headers = await user_with_token(client, "kayak_blocked")
    blocker, blocker_headers = await user_with_token(client, "kayak_blocker")
    private, private_headers = await user_with_token(client, "kayak_private")
    friend, friend_headers = await user_with_token(client, "kayak_friend")
    quitter, quitter_headers = await user_with_token(client, "kayak_quitter")
    shown, shown_headers = await user_with_token(client, "kayak_shown")
    for who in (blocked_headers, blocker_headers, private_headers, quitter_headers, shown_headers):
        await new_post(client, who, "kayak trip")
    deleted = await new_post(client, shown_headers, "kayak gone")
    await indexed(pool)

    assert (await client.post(f"/api/accounts/users/{blocked['id']}/block/", headers=headers)).status in (200, 204)
    assert (await client.post(f"/api/accounts/users/{viewer['id']}/block/", headers=blocker_headers)).status in (200, 204)
    response = await client.patch("/api/accounts/settings/", json={"is_private": True}, headers=private_headers)
    assert response.status == 200
    assert (await client.delete(f"/api/posts/{deleted['id']}/", headers=shown_headers)).status == 204
    response = await client.post("/api/accounts/users/me/deactivate/", json={"password": "correct horse battery"},
                                 headers=quitter_headers)
    assert response.status == 204
    await indexed(pool)

    assert sorted(await names(client, headers, "users", "kayak")) == ["kayak_friend", "kayak_private", "kayak_shown"]
    posts = (await find(client, headers, "posts", "kayak", limit=1))
    assert [p["author"]["username"] for p in posts["results"]] == ["kayak_shown"]  # the page is filled
    assert posts["next"] is None or (await (await client.get(posts["next"], headers=headers)).json())["results"] == []
    # a follower of the private account sees its post; the blocked user sees no one who blocks
    assert (await client.post(f"/api/accounts/users/{private['id']}/follow/", headers=friend_headers)).status == 200
    await client.post(f"/api/accounts/follow-requests/{friend['id']}/approve/", headers=private_headers)
    assert sorted(p["author"]["username"] for p in (await find(client, friend_headers, "posts", "kayak"))["results"]) \
        == ["kayak_blocked", "kayak_blocker", "kayak_private", "kayak_shown"]
    assert "viewer" not in await names(client, blocked_headers, "users", "viewer")


async def test_bad_queries_are_400_and_change_nothing(search_client):
    client = search_client
    _, headers = await user_with_token(client)
    for query in ({}, {"q": "   "}, {"q": "x" * 101}, {"q": "a", "limit": "0"}, {"q": "a", "cursor": "!!"},
                  {"q": "a", "cursor": "WyJ4Il0"}, {"q": "a", "cursor": "WzEsMiwzXQ"}):
        response = await client.get("/api/search/posts/", params=query, headers=headers)
        assert response.status == 400, (query, await response.text())
        assert (await response.json())["error"]["code"] == "validation_error"
    assert (await find(client, headers, "users", "%_\\'\"&|!:*()"))["results"] == []  # operators are only text
    assert (await client.get("/api/search/users/", params={"q": "a"})).status == 401


async def test_an_unreachable_elasticsearch_is_503_and_named_by_readyz(aiohttp_client, stack_env, config):
    import devstack

    dead = f"http://127.0.0.1:{devstack.free_port()}"
    app = create_app(make_config(stack_env, database_url=config.database.url, search_backend="elasticsearch",
                                 elasticsearch_url=dead))
    client = await aiohttp_client(app)
    _, headers = await user_with_token(client)
    response = await client.get("/api/search/users/", params={"q": "ana"}, headers=headers)
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "service_unavailable"
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["elasticsearch"] == "failing"
