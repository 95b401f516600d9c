"""Account deletion: hidden at once, cancelled by a login within 30 days, otherwise erased by the
job (rows and S3 objects, other users' counters kept right), on a clock the test moves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support import (
    PASSWORD, bearer, delete_account, login, new_post, objects_of, register, run_erasure,
)


@pytest.fixture
def client(clocked_client):
    return clocked_client

GRACE = timedelta(days=30)


async def test_a_deleted_account_is_hidden_at_once_and_a_login_within_30_days_cancels(client, clock, pool):
    owner, viewer = await register(client), await register(client)
    pair, viewer_pair = await login(client, owner["username"]), await login(client, viewer["username"])
    post = await new_post(client, bearer(pair), "before")
    assert (await delete_account(client, pair, "not my password")).status == 400
    response = await delete_account(client, pair)
    assert response.status == 202
    assert (await response.json())["erase_after"].startswith((clock.now + GRACE).date().isoformat())
    assert (await client.get("/api/accounts/users/me/", headers=bearer(pair))).status == 401
    assert (await client.get(f"/api/accounts/users/{owner['id']}/", headers=bearer(viewer_pair))).status == 404
    assert (await client.get(f"/api/posts/{post['id']}/", headers=bearer(viewer_pair))).status == 404

    clock.advance(days=29)
    assert await run_erasure(client) == 0
    again = await login(client, owner["username"])
    assert (await client.get(f"/api/accounts/users/{owner['id']}/", headers=bearer(viewer_pair))).status == 200
    assert (await client.get("/api/accounts/users/me/", headers=bearer(again))).status == 200
    clock.advance(days=2)
    assert await run_erasure(client) == 0
    types = [r["type"] for r in await pool.fetch("SELECT type FROM outbox ORDER BY id")]
    assert "account_deletion_requested" in types and "account_deletion_cancelled" in types


async def test_after_30_days_the_job_erases_rows_and_objects_and_fixes_others_counters(client, clock, pool):
    owner, other = await register(client), await register(client)
    pair, other_pair = await login(client, owner["username"]), await login(client, other["username"])
    own_post = await new_post(client, bearer(pair), "mine")
    their_post = await new_post(client, bearer(other_pair), "theirs")
    for path in (f"/api/accounts/users/{other['id']}/follow/", f"/api/posts/{their_post['id']}/like/"):
        assert (await client.post(path, headers=bearer(pair))).status in (200, 201)
    assert (await client.post(f"/api/accounts/users/{owner['id']}/follow/", headers=bearer(other_pair))).status in (200, 201)
    comment = await client.post("/api/comments/", json={"post_id": their_post["id"], "text": "nice"}, headers=bearer(pair))
    assert comment.status == 201
    conversation = await client.post("/api/conversations/", json={"member_ids": [other["id"]]}, headers=bearer(pair))
    assert conversation.status in (200, 201)
    assert await objects_of(client, owner["id"])
    assert (await delete_account(client, pair)).status == 202
    await pool.execute("INSERT INTO celebrities (user_id) VALUES ($1)", int(owner["id"]))  # as if past the floor

    clock.advance(days=30, seconds=-1)
    assert await run_erasure(client) == 0
    clock.advance(seconds=1)
    assert await run_erasure(client) == 1
    assert await run_erasure(client) == 0
    assert await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", int(owner["id"])) == 0
    assert await pool.fetchval("SELECT count(*) FROM celebrities WHERE user_id = $1", int(owner["id"])) == 0
    assert await pool.fetchval("SELECT count(*) FROM posts WHERE id = $1", int(own_post["id"])) == 0
    assert await objects_of(client, owner["id"]) == []
    assert await objects_of(client, other["id"])  # nobody else's objects
    counts = await pool.fetchrow("SELECT followers_count, following_count FROM users WHERE id = $1", int(other["id"]))
    assert (counts["followers_count"], counts["following_count"]) == (0, 0)
    post = await pool.fetchrow("SELECT like_count, comment_count FROM posts WHERE id = $1", int(their_post["id"]))
    assert (post["like_count"], post["comment_count"]) == (0, 0)
    response = await client.post("/api/token/", json={"username": owner["username"], "password": PASSWORD})
    assert response.status == 401
    # the other member keeps the conversation the erased account had started
    assert await pool.fetchval("SELECT created_by FROM conversations") == int(other["id"])
    assert "account_erased" in [r["type"] for r in await pool.fetch("SELECT type FROM outbox ORDER BY id")]
