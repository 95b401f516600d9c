"""The home feed (fan-out on write into Redis timelines) and explore."""

from __future__ import annotations

from app.main import create_app
from storage.posts import post_cache_key
from storage.timelines import Timelines
from tests.conftest import make_config, wait_for
from tests.support import (
    all_pages, feed_ids, follow, followed_post, in_timeline, login, new_post, timeline, user_with_token,
)


async def test_a_post_fans_out_to_followers_timelines_and_the_authors_own(client, redis_clean):
    reader, reader_h = await user_with_token(client)
    author, author_h = await user_with_token(client)
    await follow(client, reader_h, author)
    assert await feed_ids(client, reader_h) == []  # builds the (empty) timeline
    assert await feed_ids(client, author_h) == []
    post = await new_post(client, author_h, "hello followers")
    await wait_for(lambda: in_timeline(redis_clean, reader, post["id"]))
    assert await feed_ids(client, reader_h) == [post["id"]]
    assert await feed_ids(client, author_h) == [post["id"]]


async def test_a_missing_timeline_is_rebuilt_from_postgres_never_shown_empty(client, redis_clean):
    reader, reader_h = await user_with_token(client)
    author, author_h = await user_with_token(client)
    await follow(client, reader_h, author)
    posts = [await new_post(client, author_h, f"post {i}") for i in range(3)]
    await redis_clean.delete(Timelines.key(int(reader["id"])))
    assert await feed_ids(client, reader_h) == [p["id"] for p in reversed(posts)]
    assert await timeline(redis_clean, reader) == [p["id"] for p in reversed(posts)]


async def test_a_new_follow_merges_the_followees_recent_posts(client, redis_clean):
    reader, reader_h = await user_with_token(client)
    author, author_h = await user_with_token(client)
    old = await new_post(client, author_h, "before the follow")
    assert await feed_ids(client, reader_h) == []
    await follow(client, reader_h, author)
    await wait_for(lambda: in_timeline(redis_clean, reader, old["id"]))
    assert await feed_ids(client, reader_h) == [old["id"]]


async def test_unfollow_and_block_remove_the_authors_posts_from_the_timeline(client, redis_clean):
    reader, reader_h = await user_with_token(client)
    first, first_h = await user_with_token(client)
    second, second_h = await user_with_token(client)
    await follow(client, reader_h, first)
    await follow(client, reader_h, second)
    await feed_ids(client, reader_h)
    p1 = await new_post(client, first_h, "one")
    p2 = await new_post(client, second_h, "two")
    await wait_for(lambda: in_timeline(redis_clean, reader, p2["id"]))
    assert await feed_ids(client, reader_h) == [p2["id"], p1["id"]]

    assert (await client.post(f"/api/accounts/users/{first['id']}/unfollow/", headers=reader_h)).status == 204
    await wait_for(lambda: _lacks(redis_clean, reader, p1["id"]))
    assert await feed_ids(client, reader_h) == [p2["id"]]

    assert (await client.post(f"/api/accounts/users/{reader['id']}/block/", headers=second_h)).status in (200, 204)
    await wait_for(lambda: _lacks(redis_clean, reader, p2["id"]))
    assert await feed_ids(client, reader_h) == []


async def test_celebrities_are_merged_at_read_time_not_fanned_out(aiohttp_client, stack_env, config, redis_clean):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         celebrity_threshold=2)))
    fan1, fan1_h = await user_with_token(client)
    fan2, fan2_h = await user_with_token(client)
    star, star_h = await user_with_token(client)
    await follow(client, fan1_h, star)
    await follow(client, fan2_h, star)  # now at the threshold
    await feed_ids(client, fan1_h)
    await feed_ids(client, star_h)
    post = await new_post(client, star_h, "to the masses")
    await wait_for(lambda: in_timeline(redis_clean, star, post["id"]))  # the author's own timeline
    assert await timeline(redis_clean, fan1) == []  # not fanned out...
    assert await feed_ids(client, fan1_h) == [post["id"]]  # ...but merged when read


async def test_an_account_is_listed_as_a_celebrity_when_its_followers_reach_the_floor_and_stays(
        aiohttp_client, stack_env, config, pool):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         celebrity_threshold=2)))
    assert await pool.fetchval("SELECT followers FROM celebrity_floor") == 2  # lowered as the app started
    fan1, fan1_h = await user_with_token(client)
    fan2, fan2_h = await user_with_token(client)
    star, _ = await user_with_token(client)
    listed = lambda: pool.fetchval("SELECT count(*) FROM celebrities WHERE user_id = $1", int(star["id"]))  # noqa: E731
    await follow(client, fan1_h, star)
    assert await listed() == 0  # one follower: fanned out to
    await follow(client, fan2_h, star)
    assert await listed() == 1
    assert (await client.post(f"/api/accounts/users/{star['id']}/unfollow/", headers=fan2_h)).status == 204
    assert await listed() == 1  # never taken off: the page still tests the count against its threshold


async def test_a_process_with_a_lower_threshold_lists_the_accounts_already_past_it(
        aiohttp_client, stack_env, config, pool, redis_clean):
    # the default threshold's apps serve requests only: the one fan-out consumer is the merging app's
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url), consumers=False))
    fan1, fan1_h = await user_with_token(client)
    fan2, fan2_h = await user_with_token(client)
    star, star_h = await user_with_token(client)
    await follow(client, fan1_h, star)
    await follow(client, fan2_h, star)  # two followers, under the first app's threshold: not listed
    assert await pool.fetchval("SELECT count(*) FROM celebrities") == 0

    merging = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                          celebrity_threshold=2)))
    assert [r["user_id"] for r in await pool.fetch("SELECT user_id FROM celebrities")] == [int(star["id"])]
    await feed_ids(merging, fan1_h)
    await feed_ids(merging, star_h)
    post = await new_post(merging, star_h, "merged, not pushed")
    await wait_for(lambda: in_timeline(redis_clean, star, post["id"]))
    assert await timeline(redis_clean, fan1) == []
    assert await feed_ids(merging, fan1_h) == [post["id"]]

    await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url), consumers=False))
    assert await pool.fetchval("SELECT followers FROM celebrity_floor") == 2  # a higher threshold never raises it


async def test_only_recently_active_followers_get_the_fan_out(client, redis_clean, pool):
    active, active_h = await user_with_token(client)
    away, away_h = await user_with_token(client)
    author, author_h = await user_with_token(client)
    for h in (active_h, away_h):
        await follow(client, h, author)
        await feed_ids(client, h)
    await pool.execute("UPDATE users SET last_active_at = now() - interval '40 days' WHERE id = $1", int(away["id"]))
    post = await new_post(client, author_h, "news")
    await wait_for(lambda: in_timeline(redis_clean, active, post["id"]))
    assert await timeline(redis_clean, away) == []


async def test_timelines_are_capped(aiohttp_client, stack_env, config, redis_clean):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url, feed_cap=3)))
    author, author_h = await user_with_token(client)
    await feed_ids(client, author_h)
    posts = [await new_post(client, author_h, str(i)) for i in range(5)]
    await wait_for(lambda: in_timeline(redis_clean, author, posts[-1]["id"]))
    assert await timeline(redis_clean, author) == [p["id"] for p in reversed(posts)][:3]


async def test_pages_have_no_duplicates_and_no_gaps_while_new_posts_arrive(client, redis_clean):
    reader, reader_h = await user_with_token(client)
    author, author_h = await user_with_token(client)
    await follow(client, reader_h, author)
    await feed_ids(client, reader_h)
    older = [await new_post(client, author_h, f"old {i}") for i in range(5)]
    await wait_for(lambda: in_timeline(redis_clean, reader, older[-1]["id"]))
    response = await client.get("/api/posts/feed/", headers=reader_h, params={"limit": "2"})
    page = await response.json()
    seen = [p["id"] for p in page["results"]]
    newer = [await new_post(client, author_h, f"new {i}") for i in range(2)]
    await wait_for(lambda: in_timeline(redis_clean, reader, newer[-1]["id"]))
    while page["next"]:
        page = await (await client.get(page["next"], headers=reader_h)).json()
        seen += [p["id"] for p in page["results"]]
    assert seen == [p["id"] for p in reversed(older)]


async def test_a_deleted_post_is_gone_from_the_feed_at_once(client, redis_clean):
    reader_h, author_h, post, _ = await followed_post(client, redis_clean, "regret")
    assert (await client.delete(f"/api/posts/{post['id']}/", headers=author_h)).status == 204
    assert await feed_ids(client, reader_h) == []


async def test_explore_shows_trending_public_posts_from_accounts_the_viewer_does_not_follow(client, pool):
    from app.background import background_key

    viewer, viewer_h = await user_with_token(client)
    followed, followed_h = await user_with_token(client)
    stranger, stranger_h = await user_with_token(client)
    blocker, blocker_h = await user_with_token(client)
    private, private_h = await user_with_token(client)
    await follow(client, viewer_h, followed)
    posts = {name: await new_post(client, h, name) for name, h in
             [("followed", followed_h), ("stranger", stranger_h), ("blocker", blocker_h), ("private", private_h)]}
    quiet = await new_post(client, stranger_h, "nobody likes this")
    for post in posts.values():
        for _, h in [await user_with_token(client) for _ in range(2)]:
            assert (await client.post(f"/api/posts/{post['id']}/like/", headers=h)).status == 200
    await client.post(f"/api/accounts/users/{viewer['id']}/block/", headers=blocker_h)
    await client.patch("/api/accounts/settings/", json={"is_private": True}, headers=private_h)

    from jobs.periodic import run_job_once

    app = client.server.app
    job = next(j for j in app[background_key].jobs if j.name == "explore") if app[background_key].jobs else None
    if job is None:
        from app.main import feed_jobs
        job = feed_jobs(app)[0]
    from handlers.context import redis_key
    assert await run_job_once(app[redis_key], job, owner="test")
    response = await client.get("/api/posts/explore/", headers=viewer_h)
    assert response.status == 200
    ids = [p["id"] for p in (await response.json())["results"]]
    assert ids == [posts["stranger"]["id"]]
    assert quiet["id"] not in ids


async def test_explore_on_a_fresh_install_shows_the_newest_public_posts_at_once_not_hidden_ones(
        client, pool, redis_clean):
    from app.main import feed_jobs
    from handlers.context import redis_key
    from jobs.periodic import run_job_once
    from storage import explore

    app = client.server.app
    assert await run_job_once(app[redis_key], feed_jobs(app)[0], owner="test")  # the start-up run: nothing yet
    viewer, viewer_h = await user_with_token(client)
    authors = {name: await user_with_token(client) for name in
               ("first", "second", "followed", "blocker", "private", "muted", "suspended")}
    posts = {name: await new_post(client, h, name) for name, (_, h) in authors.items()}
    mine = await new_post(client, viewer_h, "mine")
    again = await new_post(client, authors["first"][1], "first again")
    await follow(client, viewer_h, authors["followed"][0])
    await client.post(f"/api/accounts/users/{viewer['id']}/block/", headers=authors["blocker"][1])
    await client.patch("/api/accounts/settings/", json={"is_private": True}, headers=authors["private"][1])
    assert (await client.post(f"/api/accounts/users/{authors['muted'][0]['id']}/mute/", headers=viewer_h)).status == 204
    await pool.execute("UPDATE users SET is_active = false, suspended_at = now() WHERE id = $1",
                       int(authors["suspended"][0]["id"]))
    assert not await explore.has_trending(redis_clean)  # no like yet: nothing ranked

    shown = [p["id"] for p in await all_pages(client, "/api/posts/explore/?limit=2", viewer_h)]
    assert shown == [again["id"], posts["second"]["id"], posts["first"]["id"]]
    assert mine["id"] not in shown
    # the author's followers see it too, the author does not
    stranger_h = (await user_with_token(client))[1]
    assert posts["followed"]["id"] in [p["id"] for p in await all_pages(client, "/api/posts/explore/", stranger_h)]
    assert posts["followed"]["id"] not in [
        p["id"] for p in await all_pages(client, "/api/posts/explore/", authors["followed"][1])]


async def test_explore_once_ranked_shows_the_ranking_only_to_its_end(client, redis_clean):
    from storage import explore

    viewer_h = (await user_with_token(client))[1]
    author_h = (await user_with_token(client))[1]
    ranked, unranked = await new_post(client, author_h, "liked"), await new_post(client, author_h, "newer, unliked")
    await explore.store_trending(redis_clean, [(int(ranked["id"]), 1.0)])
    first = await (await client.get("/api/posts/explore/?limit=1", headers=viewer_h)).json()
    assert [p["id"] for p in first["results"]] == [ranked["id"]]
    rest = await (await client.get(first["next"], headers=viewer_h)).json()
    assert (rest["results"], rest["next"]) == ([], None)
    assert unranked["id"] not in [p["id"] for p in await all_pages(client, "/api/posts/explore/", viewer_h)]


async def _lacks(redis, user, post_id: str) -> bool:
    return not await in_timeline(redis, user, post_id)


async def test_feed_hydration_caches_posts_and_an_edit_or_like_shows_at_once(client, redis_clean):
    reader_h, author_h, post, _ = await followed_post(client, redis_clean, "first words #one")
    await feed_ids(client, reader_h)
    assert await redis_clean.exists(post_cache_key(int(post['id'])))  # hydrated once, then cached
    await client.patch(f"/api/posts/{post['id']}/", json={"caption": "second words #two"}, headers=author_h)
    await client.post(f"/api/posts/{post['id']}/like/", headers=reader_h)
    body = await (await client.get("/api/posts/feed/", headers=reader_h)).json()
    shown = body["results"][0]
    assert (shown["caption"], shown["hashtags"], shown["like_count"], shown["liked"]) == \
        ("second words #two", ["two"], 1, True)


async def test_a_returning_user_counts_as_active_again_once_they_log_in_or_refresh(client, redis_clean, pool):
    away, away_h = await user_with_token(client)
    author, author_h = await user_with_token(client)
    await follow(client, away_h, author)
    await feed_ids(client, away_h)
    await pool.execute("UPDATE users SET last_active_at = now() - interval '40 days' WHERE id = $1", int(away["id"]))
    tokens = await login(client, away["username"])
    assert (await client.post("/api/token/refresh/", json={"refresh": tokens["refresh"]})).status == 200
    assert await pool.fetchval("SELECT last_active_at > now() - interval '1 minute' FROM users WHERE id = $1",
                               int(away["id"]))
    post = await new_post(client, author_h, "welcome back")
    await wait_for(lambda: in_timeline(redis_clean, away, post["id"]))


async def test_an_explore_cursor_past_the_ranking_is_400_not_a_redis_error(client, redis_clean):
    import base64

    from storage import explore

    _, viewer_h = await user_with_token(client)
    post = await new_post(client, (await user_with_token(client))[1], "ranked")
    await explore.store_trending(redis_clean, [(int(post["id"]), 1.0)])

    def cursor(offset: int) -> str:
        return base64.urlsafe_b64encode(str([offset]).encode()).decode().rstrip("=")

    for offset in (2**63 - 1, 2**62, explore.SIZE + 1):  # offset + limit past Redis' 64 bits, or past the ranking
        response = await client.get(f"/api/posts/explore/?cursor={cursor(offset)}", headers=viewer_h)
        assert response.status == 400, (offset, response.status)
        assert (await response.json())["error"]["fields"] == {"cursor": "Invalid cursor."}
    end = await client.get(f"/api/posts/explore/?cursor={cursor(explore.SIZE)}", headers=viewer_h)
    assert end.status == 200 and (await end.json()) == {"results": [], "next": None}
