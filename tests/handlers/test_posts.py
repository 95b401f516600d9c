"""Posts: creation rules, detail, lists, visibility, edits, deletion, likes and saves."""

from __future__ import annotations

import asyncio

import msgspec

from handlers.auth import make_access_token
from handlers.posts import PostOut
from storage.cluster import is_cluster
from tests.support import events, new_media, new_post, user_with_token


async def test_post_parses_hashtags_and_mentions_and_reuses_its_location(client, pool):
    alice, headers = await user_with_token(client)
    bob, _ = await user_with_token(client)
    carol, _ = await user_with_token(client)
    await pool.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       int(carol["id"]), int(alice["id"]))
    caption = f"Sunset #Sun #sun #beach_day @{bob['username']} @{carol['username']} @nobody_here, mail a@b.com"
    post = await new_post(client, headers, caption, location={"name": "Lisbon", "lat": 38.72, "lng": -9.14})
    assert post["caption"] == caption
    assert post["hashtags"] == ["beach_day", "sun"]
    assert post["author"]["id"] == alice["id"]
    assert post["location"]["name"] == "Lisbon" and post["location"]["lat"] == 38.72
    assert len(post["media"]) == 1 and post["media"][0]["renditions"]
    assert (post["like_count"], post["comment_count"], post["liked"], post["saved"]) == (0, 0, False, False)
    # the page splices pre-encoded bytes: what it makes is exactly a PostOut, as the cache hit is
    cached = await client.get(f"/api/posts/{post['id']}/", headers=headers)
    assert msgspec.json.decode(await cached.read(), type=PostOut) == msgspec.json.decode(
        msgspec.json.encode(post), type=PostOut)
    again = await new_post(client, headers, "again", location={"name": "lisbon", "lat": 38.72, "lng": -9.14})
    assert again["location"]["id"] == post["location"]["id"]
    mentioned = await pool.fetch("SELECT user_id FROM mentions WHERE post_id = $1", int(post["id"]))
    assert [r["user_id"] for r in mentioned] == [int(bob["id"])]  # unknown and blocking users ignored
    created = await events(pool, "post_created")
    assert created[0]["key"] == alice["id"]
    assert created[0]["post_id"] == post["id"] and created[0]["author_id"] == alice["id"]
    assert created[0]["created_at"]
    mentions = await events(pool, "mention_created")
    assert [(m["post_id"], m["user_id"]) for m in mentions] == [(post["id"], bob["id"])]
    assert await pool.fetchval("SELECT posts_count FROM users WHERE id = $1", int(alice["id"])) == 2


async def test_bad_posts_are_400_and_change_nothing(client, pool):
    _, headers = await user_with_token(client)
    _, other = await user_with_token(client)
    mine = await new_media(client, headers, 11)
    theirs = await new_media(client, other)
    cases = [
        {"caption": "", "media_ids": []},
        {"caption": "eleven", "media_ids": mine},
        {"caption": "not mine", "media_ids": [mine[0], theirs[0]]},
        {"caption": "twice", "media_ids": [mine[0], mine[0]]},
        {"caption": "x" * 2201, "media_ids": [mine[0]]},
        {"caption": "ghost", "media_ids": ["123456"]},
        {"caption": "bad id", "media_ids": ["abc"]},
        {"caption": "where", "media_ids": [mine[0]], "location": {"name": "", "lat": 200}},
    ]
    for body in cases:
        response = await client.post("/api/posts/", json=body, headers=headers)
        assert response.status == 400, (body, await response.text())
    assert await pool.fetchval("SELECT count(*) FROM posts") == 0
    assert await pool.fetchval("SELECT count(*) FROM media WHERE attached_at IS NOT NULL") == 0
    used = await client.post("/api/posts/", json={"caption": "ok", "media_ids": mine[:10]}, headers=headers)
    assert used.status == 201
    reused = await client.post("/api/posts/", json={"caption": "again", "media_ids": [mine[0]]}, headers=headers)
    assert reused.status == 400  # a media item serves one post


async def test_author_list_is_newest_first_and_paginated(client):
    author, headers = await user_with_token(client)
    made = [(await new_post(client, headers, f"post {i}"))["id"] for i in range(3)]
    response = await client.get(f"/api/posts/?author={author['id']}&limit=2", headers=headers)
    first = await response.json()
    assert [p["id"] for p in first["results"]] == made[::-1][:2]
    second = await (await client.get(first["next"], headers=headers)).json()
    assert [p["id"] for p in second["results"]] == [made[0]] and second["next"] is None
    own = await (await client.get("/api/posts/", headers=headers)).json()
    assert len(own["results"]) == 3


async def test_blocked_and_private_posts_answer_404(client, pool):
    author, headers = await user_with_token(client)
    viewer, viewer_headers = await user_with_token(client)
    post = await new_post(client, headers, "hello")
    assert (await client.get(f"/api/posts/{post['id']}/", headers=viewer_headers)).status == 200
    await pool.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)", int(author["id"]), int(viewer["id"]))
    for url in (f"/api/posts/{post['id']}/", f"/api/posts/?author={author['id']}", f"/api/posts/{post['id']}/likes/"):
        assert (await client.get(url, headers=viewer_headers)).status == 404, url
    assert (await client.post(f"/api/posts/{post['id']}/like/", headers=viewer_headers)).status == 404
    assert (await client.post(f"/api/posts/{post['id']}/save/", headers=viewer_headers)).status == 404
    await pool.execute("DELETE FROM blocks")
    await pool.execute("UPDATE users SET is_private = true WHERE id = $1", int(author["id"]))
    assert (await client.get(f"/api/posts/{post['id']}/", headers=viewer_headers)).status == 404
    assert (await client.get(f"/api/posts/?author={author['id']}", headers=viewer_headers)).status == 404
    await pool.execute("INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2)", int(viewer["id"]), int(author["id"]))
    assert (await client.get(f"/api/posts/{post['id']}/", headers=viewer_headers)).status == 200


async def test_only_the_author_edits_the_caption(client, pool):
    _, headers = await user_with_token(client)
    _, other = await user_with_token(client)
    post = await new_post(client, headers, "old #one")
    assert (await client.patch(f"/api/posts/{post['id']}/", json={"caption": "hijack"}, headers=other)).status == 404
    response = await client.patch(f"/api/posts/{post['id']}/", json={"caption": "new #two #Three"}, headers=headers)
    assert response.status == 200
    body = await response.json()
    assert body["caption"] == "new #two #Three" and body["hashtags"] == ["three", "two"] and body["edited_at"]
    assert (await client.patch(f"/api/posts/{post['id']}/", json={"caption": "x" * 2201}, headers=headers)).status == 400


async def test_deleted_post_is_gone_from_every_list_and_count(client, pool):
    author, headers = await user_with_token(client)
    _, fan = await user_with_token(client)
    post = await new_post(client, headers, "soon gone #bye")
    assert (await client.post(f"/api/posts/{post['id']}/save/", headers=fan)).status == 200
    assert (await client.post(f"/api/posts/{post['id']}/like/", headers=fan)).status == 200
    assert (await client.delete(f"/api/posts/{post['id']}/", headers=fan)).status == 404  # not theirs
    assert (await client.delete(f"/api/posts/{post['id']}/", headers=headers)).status == 204
    assert (await client.get(f"/api/posts/{post['id']}/", headers=headers)).status == 404
    assert (await (await client.get("/api/posts/", headers=headers)).json())["results"] == []
    assert (await (await client.get("/api/posts/saved/", headers=fan)).json())["results"] == []
    assert await pool.fetchval("SELECT posts_count FROM users WHERE id = $1", int(author["id"])) == 0
    assert await pool.fetchval("SELECT count(*) FROM likes") == 0
    media_id = int(post["media"][0]["id"])
    assert await pool.fetchval("SELECT deleted_at IS NOT NULL FROM media WHERE id = $1", media_id)
    assert (await client.get(f"/api/media/{media_id}/", headers=headers)).status == 404
    deleted = await events(pool, "post_deleted")
    assert [(e["key"], e["post_id"], e["author_id"]) for e in deleted] == [(author["id"], post["id"], author["id"])]
    assert (await client.delete(f"/api/posts/{post['id']}/", headers=headers)).status == 404


async def test_like_and_save_are_idempotent_and_shown_to_the_viewer(client, pool):
    _, headers = await user_with_token(client)
    fan, fan_headers = await user_with_token(client)
    post = await new_post(client, headers, "like me")
    url = f"/api/posts/{post['id']}"
    for _ in range(2):
        assert await (await client.post(f"{url}/like/", headers=fan_headers)).json() == {"liked": True, "like_count": 1}
        assert await (await client.post(f"{url}/save/", headers=fan_headers)).json() == {"saved": True}
    seen = await (await client.get(f"{url}/", headers=fan_headers)).json()
    assert (seen["like_count"], seen["liked"], seen["saved"]) == (1, True, True)
    own = await (await client.get(f"{url}/", headers=headers)).json()
    assert (own["liked"], own["saved"]) == (False, False)
    likers = await (await client.get(f"{url}/likes/", headers=headers)).json()
    assert [u["id"] for u in likers["results"]] == [fan["id"]]
    saved = await (await client.get("/api/posts/saved/", headers=fan_headers)).json()
    assert [p["id"] for p in saved["results"]] == [post["id"]]
    for _ in range(2):
        assert await (await client.post(f"{url}/unlike/", headers=fan_headers)).json() == {"liked": False, "like_count": 0}
        assert await (await client.post(f"{url}/unsave/", headers=fan_headers)).json() == {"saved": False}
    assert [e["user_id"] for e in await events(pool, "post_liked")] == [fan["id"]]
    assert [e["user_id"] for e in await events(pool, "post_unliked")] == [fan["id"]]
    assert (await client.post("/api/posts/99999/like/", headers=fan_headers)).status == 404


async def test_fifty_users_liking_in_parallel_twice_count_fifty(client, pool, config):
    _, headers = await user_with_token(client)
    post = await new_post(client, headers, "popular")
    ids = [r["id"] for r in await pool.fetch(
        "INSERT INTO users (username, email, password_hash) SELECT 'fan' || g, 'fan' || g || '@example.com', 'x'"
        " FROM generate_series(1, 50) g RETURNING id")]
    await pool.execute("INSERT INTO sessions (id, user_id) SELECT u, u FROM unnest($1::bigint[]) u", ids)
    tokens = [{"Authorization": "Bearer " + make_access_token(config.auth.jwt_secret, uid, uid, 600)} for uid in ids]
    responses = await asyncio.gather(*(client.post(f"/api/posts/{post['id']}/like/", headers=h) for h in tokens * 2))
    assert {r.status for r in responses} == {200}
    assert (await (await client.get(f"/api/posts/{post['id']}/", headers=headers)).json())["like_count"] == 50
    assert await pool.fetchval("SELECT count(*) FROM likes") == 50
    assert len(await events(pool, "post_liked")) == 50


async def test_saved_list_is_most_recently_saved_first(client):
    _, headers = await user_with_token(client)
    _, fan = await user_with_token(client)
    first = await new_post(client, headers, "one")
    second = await new_post(client, headers, "two")
    await client.post(f"/api/posts/{second['id']}/save/", headers=fan)
    await client.post(f"/api/posts/{first['id']}/save/", headers=fan)
    page = await (await client.get("/api/posts/saved/?limit=1", headers=fan)).json()
    assert [p["id"] for p in page["results"]] == [first["id"]]
    rest = await (await client.get(page["next"], headers=fan)).json()
    assert [p["id"] for p in rest["results"]] == [second["id"]] and rest["next"] is None


async def _mget_calls(redis) -> int:
    return (await redis.info("commandstats")).get("cmdstat_mget", {}).get("calls", 0)


async def test_a_list_read_again_finds_its_posts_in_the_rate_limits_call_and_still_shows_every_change(
        client, redis_clean):
    author, headers = await user_with_token(client)
    _, reader = await user_with_token(client)
    made = [(await new_post(client, headers, f"post {i}"))["id"] for i in range(3)]
    for post_id in made:
        await client.post(f"/api/posts/{post_id}/save/", headers=reader)

    async def read(url: str) -> tuple[list, int]:
        before = await _mget_calls(redis_clean)
        body = await (await client.get(url, headers=reader)).json()
        return body["results"], await _mget_calls(redis_clean) - before

    for url in (f"/api/posts/?author={author['id']}&limit=2", "/api/posts/saved/?limit=2"):
        first, _ = await read(url)
        again, guessed = await read(url)
        assert again == first
        moved = await new_post(client, headers, "newer")  # the author's page and the saved list now differ
        await client.post(f"/api/posts/{moved['id']}/save/", headers=reader)
        changed, unguessed = await read(url)
        assert [p["id"] for p in changed] == [moved["id"], first[0]["id"]]
        if not is_cluster(redis_clean):  # on one node the guessed entries cost no MGET of their own
            assert unguessed == guessed + 1
        await client.delete(f"/api/posts/{moved['id']}/", headers=headers)
    # the guess only names cache entries: an edit, a deletion and a like show at once
    await client.patch(f"/api/posts/{made[2]}/", json={"caption": "edited"}, headers=headers)
    await client.delete(f"/api/posts/{made[1]}/", headers=headers)
    await client.post(f"/api/posts/{made[2]}/like/", headers=reader)
    for url in (f"/api/posts/?author={author['id']}&limit=2", "/api/posts/saved/?limit=2"):
        shown, _ = await read(url)
        assert [(p["id"], p["caption"], p["liked"]) for p in shown] == [(made[2], "edited", True), (made[0], "post 0", False)]


async def test_openapi_documents_the_post_routes(client):
    spec = await (await client.get("/api/openapi.json")).json()
    for path in ("/api/media/", "/api/posts/", "/api/posts/{id}/", "/api/posts/{id}/like/", "/api/posts/saved/",
                 "/api/comments/", "/api/comments/{id}/like/"):
        assert path in spec["paths"], path
    assert spec["paths"]["/api/posts/{id}/"]["get"]["summary"]


async def test_a_blank_location_name_is_400_and_creates_nothing(client, pool):
    _, headers = await user_with_token(client)
    media = await new_media(client, headers)
    for name in ("   ", "\t\n", "\u3000"):
        response = await client.post("/api/posts/", headers=headers,
                                     json={"media_ids": media, "location": {"name": name}})
        assert response.status == 400, await response.text()
        assert "location.name" in (await response.json())["error"]["fields"]
    assert await pool.fetchval("SELECT count(*) FROM posts") == 0
    assert await pool.fetchval("SELECT count(*) FROM locations") == 0
