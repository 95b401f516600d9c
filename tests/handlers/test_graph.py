"""The follow graph against the real stack: follows, requests of private accounts, blocks, the
lists, the outbox events, and counts that stay exact under concurrent writes."""

from __future__ import annotations

import asyncio

import pytest

from app.main import create_app
from tests.conftest import make_config
from tests.support import user_with_token


@pytest.fixture
async def client(aiohttp_client, stack_env, config):
    """The real app, with login/registration limits high enough for the many users a test makes."""
    return await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                       rate_limit_auth_per_minute=100_000)))


async def post(client, path: str, headers: dict) -> int:
    return (await client.post(path, headers=headers)).status


async def follow(client, headers: dict, user: dict) -> tuple[int, dict | None]:
    response = await client.post(f"/api/accounts/users/{user['id']}/follow/", headers=headers)
    return response.status, (await response.json()) if response.status == 200 else None


async def names(client, path: str, headers: dict) -> list[str]:
    response = await client.get(path, headers=headers)
    assert response.status == 200, await response.text()
    return [u["username"] for u in (await response.json())["results"]]


async def counts(pool, user: dict) -> tuple[int, int]:
    row = await pool.fetchrow("SELECT followers_count, following_count FROM users WHERE id = $1", int(user["id"]))
    return row["followers_count"], row["following_count"]


async def assert_counts_match_rows(pool) -> None:
    mismatched = await pool.fetch(
        "SELECT u.id FROM users u WHERE u.followers_count <> (SELECT count(*) FROM follows WHERE followee_id = u.id)"
        " OR u.following_count <> (SELECT count(*) FROM follows WHERE follower_id = u.id)"
    )
    assert mismatched == []


async def events(pool) -> list[tuple[str, dict]]:
    rows = await pool.fetch("SELECT type, payload FROM outbox WHERE topic = 'accounts' AND type <> 'user_registered'"
                            " ORDER BY id")
    return [(r["type"], r["payload"]) for r in rows]


# ---------------------------------------------------------------- following


async def test_follow_a_public_account_counts_and_lists_it(client, pool):
    ana, ana_h = await user_with_token(client, "ana")
    bob, bob_h = await user_with_token(client, "bob")
    assert await follow(client, ana_h, bob) == (200, {"status": "following"})
    assert await follow(client, ana_h, bob) == (200, {"status": "following"})  # idempotent
    assert await counts(pool, bob) == (1, 0) and await counts(pool, ana) == (0, 1)
    assert await names(client, f"/api/accounts/users/{bob['id']}/followers/", bob_h) == ["ana"]
    assert await names(client, f"/api/accounts/users/{ana['id']}/following/", bob_h) == ["bob"]
    assert await events(pool) == [("follow_created", {"actor_id": ana["id"], "target_id": bob["id"]})]


async def test_unfollow_removes_the_edge_once(client, pool):
    ana, ana_h = await user_with_token(client, "ana")
    bob, _ = await user_with_token(client, "bob")
    await follow(client, ana_h, bob)
    assert await post(client, f"/api/accounts/users/{bob['id']}/unfollow/", ana_h) == 204
    assert await post(client, f"/api/accounts/users/{bob['id']}/unfollow/", ana_h) == 204
    assert await counts(pool, bob) == (0, 0) and await counts(pool, ana) == (0, 0)
    assert [t for t, _ in await events(pool)] == ["follow_created", "follow_removed"]


async def test_following_yourself_is_400(client, pool):
    ana, ana_h = await user_with_token(client)
    status, _ = await follow(client, ana_h, ana)
    assert status == 400
    assert await counts(pool, ana) == (0, 0)


async def test_following_an_unknown_user_is_404(client):
    _, ana_h = await user_with_token(client)
    assert (await follow(client, ana_h, {"id": "999999"}))[0] == 404
    assert (await follow(client, ana_h, {"id": "nope"}))[0] == 404
    assert await post(client, "/api/accounts/users/999999/unfollow/", ana_h) == 404
    assert await post(client, "/api/accounts/users/999999/block/", ana_h) == 404


async def test_following_someone_who_blocked_you_is_404(client, pool):
    ana, ana_h = await user_with_token(client)
    bob, bob_h = await user_with_token(client)
    assert await post(client, f"/api/accounts/users/{ana['id']}/block/", bob_h) == 204
    assert (await follow(client, ana_h, bob))[0] == 404
    assert (await follow(client, bob_h, ana))[0] == 404  # nor the one you block
    assert await pool.fetchval("SELECT count(*) FROM follows") == 0


async def test_graph_routes_need_a_login(client):
    ana, _ = await user_with_token(client)
    assert (await client.post(f"/api/accounts/users/{ana['id']}/follow/")).status == 401
    assert (await client.get("/api/accounts/blocks/")).status == 401


# ---------------------------------------------------------------- private accounts


async def make_private(client, headers: dict) -> None:
    response = await client.patch("/api/accounts/settings/", json={"is_private": True}, headers=headers)
    assert response.status == 200


async def test_private_account_gets_a_request_that_approval_turns_into_a_follow(client, pool):
    ana, ana_h = await user_with_token(client, "ana")
    bob, bob_h = await user_with_token(client, "bob")
    await make_private(client, bob_h)
    assert await follow(client, ana_h, bob) == (200, {"status": "requested"})
    profile = await (await client.get(f"/api/accounts/users/{bob['id']}/", headers=ana_h)).json()
    assert profile["relationship"]["requested"] is True and profile["followers_count"] == 0
    assert await names(client, "/api/accounts/follow-requests/", bob_h) == ["ana"]
    # a private account's lists are hidden from those who do not follow it
    assert (await client.get(f"/api/accounts/users/{bob['id']}/followers/", headers=ana_h)).status == 404
    assert await post(client, f"/api/accounts/follow-requests/{ana['id']}/approve/", bob_h) == 204
    assert await counts(pool, bob) == (1, 0) and await counts(pool, ana) == (0, 1)
    assert await names(client, "/api/accounts/follow-requests/", bob_h) == []
    assert await names(client, f"/api/accounts/users/{bob['id']}/followers/", ana_h) == ["ana"]
    assert await post(client, f"/api/accounts/follow-requests/{ana['id']}/approve/", bob_h) == 404
    assert [t for t, _ in await events(pool)] == ["follow_request_created", "follow_request_approved"]


async def test_rejected_or_withdrawn_requests_leave_no_follow(client, pool):
    ana, ana_h = await user_with_token(client, "ana")
    bob, bob_h = await user_with_token(client, "bob")
    await make_private(client, bob_h)
    await follow(client, ana_h, bob)
    assert await post(client, f"/api/accounts/follow-requests/{ana['id']}/reject/", bob_h) == 204
    assert await post(client, f"/api/accounts/follow-requests/{ana['id']}/reject/", bob_h) == 404
    await follow(client, ana_h, bob)
    assert await post(client, f"/api/accounts/users/{bob['id']}/unfollow/", ana_h) == 204
    assert await names(client, "/api/accounts/follow-requests/", bob_h) == []
    assert await pool.fetchval("SELECT count(*) FROM follows") == 0
    assert await counts(pool, bob) == (0, 0)


async def test_switching_to_public_approves_pending_requests(client, pool):
    owner, owner_h = await user_with_token(client, "owner")
    await make_private(client, owner_h)
    fans = [await user_with_token(client, f"fan{i}") for i in range(3)]
    for _, headers in fans:
        assert (await follow(client, headers, owner))[1] == {"status": "requested"}
    response = await client.patch("/api/accounts/settings/", json={"is_private": False}, headers=owner_h)
    assert (await response.json())["is_private"] is False
    assert await counts(pool, owner) == (3, 0)
    assert sorted(await names(client, f"/api/accounts/users/{owner['id']}/followers/", owner_h)) == [
        "fan0", "fan1", "fan2"]
    assert await pool.fetchval("SELECT count(*) FROM follow_requests") == 0
    assert [t for t, _ in await events(pool)].count("follow_request_approved") == 3
    await assert_counts_match_rows(pool)


# ---------------------------------------------------------------- blocks


async def test_block_removes_follows_and_requests_both_ways(client, pool):
    ana, ana_h = await user_with_token(client, "ana")
    bob, bob_h = await user_with_token(client, "bob")
    carl, carl_h = await user_with_token(client, "carl")
    await follow(client, ana_h, bob)
    await follow(client, bob_h, ana)
    await make_private(client, carl_h)
    await follow(client, ana_h, carl)
    await follow(client, carl_h, ana)
    assert await post(client, f"/api/accounts/users/{bob['id']}/block/", ana_h) == 204
    assert await post(client, f"/api/accounts/users/{ana['id']}/block/", carl_h) == 204
    assert await pool.fetchval("SELECT count(*) FROM follows") == 0
    assert await pool.fetchval("SELECT count(*) FROM follow_requests") == 0
    assert await counts(pool, ana) == (0, 0) and await counts(pool, bob) == (0, 0)
    assert await names(client, "/api/accounts/blocks/", ana_h) == ["bob"]
    types = [t for t, _ in await events(pool)]
    assert types.count("follow_removed") == 3 and types.count("user_blocked") == 2


async def test_blocked_users_are_404_to_each_other_on_profile_lists_and_search(client):
    ana, ana_h = await user_with_token(client, "ana")
    bob, bob_h = await user_with_token(client, "bob")
    carl, carl_h = await user_with_token(client, "carl")
    await follow(client, ana_h, carl)
    await follow(client, bob_h, carl)
    assert await post(client, f"/api/accounts/users/{bob['id']}/block/", ana_h) == 204
    for viewer, other in [(ana_h, bob), (bob_h, ana)]:
        assert (await client.get(f"/api/accounts/users/{other['id']}/", headers=viewer)).status == 404
        assert (await client.get(f"/api/accounts/users/{other['id']}/followers/", headers=viewer)).status == 404
        assert (await client.get(f"/api/accounts/users/{other['id']}/following/", headers=viewer)).status == 404
    assert await names(client, "/api/accounts/users/?q=", ana_h) == ["ana", "carl"]
    assert await names(client, "/api/accounts/users/?q=a", bob_h) == []
    # and each is left out of third parties' lists as the other sees them
    assert await names(client, f"/api/accounts/users/{carl['id']}/followers/", ana_h) == ["ana"]
    assert await names(client, f"/api/accounts/users/{carl['id']}/followers/", carl_h) == ["bob", "ana"]


async def test_unblock_does_not_restore_follows(client, pool):
    ana, ana_h = await user_with_token(client, "ana")
    bob, bob_h = await user_with_token(client, "bob")
    await follow(client, ana_h, bob)
    await post(client, f"/api/accounts/users/{bob['id']}/block/", ana_h)
    assert await post(client, f"/api/accounts/users/{bob['id']}/unblock/", ana_h) == 204
    assert await post(client, f"/api/accounts/users/{bob['id']}/unblock/", ana_h) == 404
    assert await pool.fetchval("SELECT count(*) FROM follows") == 0
    profile = await (await client.get(f"/api/accounts/users/{bob['id']}/", headers=ana_h)).json()
    assert profile["relationship"] == {"following": False, "followed_by": False, "requested": False,
                                       "blocking": False, "muting": False}
    assert await names(client, "/api/accounts/blocks/", ana_h) == []


async def test_blocking_yourself_is_400(client):
    ana, ana_h = await user_with_token(client)
    assert await post(client, f"/api/accounts/users/{ana['id']}/block/", ana_h) == 400


# ---------------------------------------------------------------- lists


async def test_followers_page_with_a_cursor_newest_first(client):
    star, star_h = await user_with_token(client, "star")
    for i in range(5):
        _, headers = await user_with_token(client, f"fan{i}")
        await follow(client, headers, star)
    seen, path = [], f"/api/accounts/users/{star['id']}/followers/?limit=2"
    while path:
        body = await (await client.get(path, headers=star_h)).json()
        assert len(body["results"]) <= 2
        seen += [u["username"] for u in body["results"]]
        path = body["next"]
    assert seen == [f"fan{i}" for i in reversed(range(5))]
    for cursor in ["garbage", "WyJ4IiwiMSJd"]:  # not base64 JSON; a list with a bad time
        bad = await client.get(f"/api/accounts/users/{star['id']}/followers/?cursor={cursor}", headers=star_h)
        assert bad.status == 400 and "cursor" in (await bad.json())["error"]["fields"]


# ---------------------------------------------------------------- concurrency


async def test_concurrent_follows_and_unfollows_keep_counts_exact(client, pool):
    star, _ = await user_with_token(client, "star")
    fans = [await user_with_token(client, f"fan{i}") for i in range(5)]
    same = fans[0][1]
    path = f"/api/accounts/users/{star['id']}"

    # 20 follows at once: the same user repeating, and different users
    statuses = await asyncio.gather(*[post(client, f"{path}/follow/", same) for _ in range(10)],
                                    *[post(client, f"{path}/follow/", h) for _, h in fans for _ in range(2)])
    assert set(statuses) == {200}
    assert await counts(pool, star) == (5, 0)
    await assert_counts_match_rows(pool)

    # follows and unfollows of the same pairs racing each other
    raced = await asyncio.gather(*[post(client, f"{path}/{'follow' if i % 2 else 'unfollow'}/", h)
                                   for i in range(20) for _, h in fans[i % 3:i % 3 + 1]])
    assert set(raced) <= {200, 204}  # no deadlock, no 500
    await assert_counts_match_rows(pool)

    # 20 unfollows at once
    await asyncio.gather(*[post(client, f"{path}/unfollow/", h) for _, h in fans for _ in range(4)])
    assert await counts(pool, star) == (0, 0)
    await assert_counts_match_rows(pool)


async def test_concurrent_mutual_follows_and_blocks_do_not_deadlock(client, pool):
    people = [await user_with_token(client, f"p{i}") for i in range(4)]
    writes = [post(client, f"/api/accounts/users/{b['id']}/follow/", ah)
              for a, ah in people for b, _ in people if a is not b]
    writes += [post(client, f"/api/accounts/users/{people[1][0]['id']}/block/", people[0][1])]
    statuses = await asyncio.gather(*writes)
    assert set(statuses) <= {200, 204, 404}  # a follow may lose the race to the block
    assert not await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM follows f JOIN blocks b ON (b.blocker_id, b.blocked_id) IN"
        " ((f.follower_id, f.followee_id), (f.followee_id, f.follower_id)))")
    await assert_counts_match_rows(pool)
