"""The broker stopped under posts and likes: events wait in the outbox, and once it is back every
post is in every follower's feed and each like made exactly one notification item."""

from __future__ import annotations

import uuid

from app.background import background_key
from app.main import create_app
from handlers.context import pool_key
from tests.conftest import wait_for
from tests.faults.conftest import fault_config, stopped
from tests.support import feed_ids, follow, new_post, user_with_token


async def test_posts_and_likes_while_the_broker_is_stopped_all_arrive_once(
        aiohttp_client, stack_env, stack_root, database_url, redis_clean):
    run = uuid.uuid4().hex[:8]
    app = create_app(fault_config(stack_env, database_url, events_transport="kafka", kafka_topic_prefix=f"t{run}.",
                                  kafka_group_prefix=f"g{run}-"))
    client = await aiohttp_client(app)
    author, author_h = await user_with_token(client)
    followers = [await user_with_token(client) for _ in range(3)]
    for _, headers in followers:
        await follow(client, headers, author)
        await feed_ids(client, headers)
    runners = app[background_key].runners
    for runner in runners:
        await wait_for(runner.ready.is_set, timeout=60)

    with stopped(stack_root, "kafka"):
        posts = [await new_post(client, author_h, f"post {n}") for n in range(3)]
        for post in posts:
            for _, headers in followers:
                response = await client.post(f"/api/posts/{post['id']}/like/", headers=headers)
                assert response.status == 200, await response.text()

    wanted = {p["id"] for p in posts}

    async def in_every_feed() -> bool:
        feeds = [set(await feed_ids(client, headers)) for _, headers in followers]
        return all(wanted <= feed for feed in feeds)

    pool = app[pool_key]

    async def one_item_per_like() -> bool:
        return await pool.fetchval("SELECT count(*) FROM notification_items WHERE kind = 'like'") == 9

    await wait_for(in_every_feed, timeout=50)
    await wait_for(one_item_per_like, timeout=30)
    pairs = await pool.fetch("SELECT actor_id, post_id, count(*) AS n FROM notification_items WHERE kind = 'like'"
                             " GROUP BY actor_id, post_id")
    assert len(pairs) == 9 and all(p["n"] == 1 for p in pairs)
    assert {str(p["actor_id"]) for p in pairs} == {u["id"] for u, _ in followers}
