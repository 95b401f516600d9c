"""Nothing a consumer gives up on is lost: dead letters are kept in PostgreSQL, listed and
replayed by `glint events dead-letters`, replayed by themselves when an outage caused them, and
counted in /metrics. A post made while Redis is frozen past every retry reaches every follower's
timeline once Redis is back."""

from __future__ import annotations

import re

import redis.exceptions

from app.main import create_app
from handlers.context import pool_key
from handlers.posts import PostCreate, create_post
from jobs.events import FunctionConsumer
from storage import outbox
from storage.outbox import Event
from storage.timelines import Timelines
from tests.conftest import wait_for
from tests.faults.conftest import fault_config, frozen, glint_cli
from tests.support import feed_ids, follow, metric, new_media, user_with_token


async def letters(pool) -> dict[str, dict]:
    rows = await pool.fetch("SELECT id, kind, event, replayed_at FROM dead_letters WHERE consumer = 'flaky'")
    return {r["event"]["payload"]["n"]: dict(r) for r in rows}


async def test_dead_letters_are_kept_listed_replayed_by_cause_and_counted(aiohttp_client, stack_env, database_url,
                                                                          redis_clean, pool):
    state = {"outage": True, "fixed": False}
    effects: list[str] = []

    async def handle(event: Event) -> None:
        if event.payload["n"] == "poison" and not state["fixed"]:
            raise ValueError("cannot handle this payload")
        if state["outage"]:
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        effects.append(event.payload["n"])

    config = fault_config(stack_env, database_url)
    client = await aiohttp_client(create_app(config, extra_consumers=[FunctionConsumer("flaky", ("test",), handle)]))
    for n in ("during-outage", "poison"):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add_event(conn, "test", "thing_happened", 1, {"n": n})
    await wait_for(lambda: _count(pool, 2), timeout=15)
    kept = await letters(pool)
    assert kept["during-outage"]["kind"] == "outage" and kept["poison"]["kind"] == "bad_event"

    metrics = await (await client.get("/metrics")).text()
    assert metric(metrics, "glint_dead_letters_total", consumer="flaky") == 2
    assert metric(metrics, "glint_dead_letters_pending", kind="outage") == 1
    assert metric(metrics, "glint_dead_letters_pending", kind="bad_event") == 1
    code, out = await glint_cli(database_url, stack_env, "events", "dead-letters", "list")
    assert code == 0, out
    assert str(kept["during-outage"]["id"]) in out and str(kept["poison"]["id"]) in out and "2 letter(s)" in out

    # the store is back: the outage's letter is replayed by itself, the bad event is not
    state["outage"] = False
    await wait_for(lambda: effects == ["during-outage"], timeout=15)
    await wait_for(lambda: _replayed(pool, "during-outage"), timeout=5)
    assert (await letters(pool))["poison"]["replayed_at"] is None

    # once the consumer is fixed, an operator replays the bad event
    state["fixed"] = True
    code, out = await glint_cli(database_url, stack_env, "events", "dead-letters", "replay",
                                str(kept["poison"]["id"]), "--wait", "20")
    assert code == 0, out
    assert "1 letter(s) replayed" in out
    assert effects == ["during-outage", "poison"]
    metrics = await (await client.get("/metrics")).text()
    assert metric(metrics, "glint_dead_letter_replays_total", consumer="flaky", outcome="replayed") == 2
    assert metric(metrics, "glint_dead_letters_pending", kind="outage") == 0
    assert metric(metrics, "glint_dead_letters_pending", kind="bad_event") == 0


async def _count(pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM dead_letters WHERE consumer = 'flaky'") == n


async def _replayed(pool, n: str) -> bool:
    return (await letters(pool))[n]["replayed_at"] is not None


async def test_a_post_made_while_redis_is_frozen_past_every_retry_reaches_every_followers_timeline(
        aiohttp_client, stack_env, stack_root, database_url, redis_clean):
    app = create_app(fault_config(stack_env, database_url))
    client = await aiohttp_client(app)
    author, author_h = await user_with_token(client)
    followers = [await user_with_token(client) for _ in range(4)]
    for _, headers in followers:
        await follow(client, headers, author)
        assert await feed_ids(client, headers) == []  # each follower's timeline is built
    media_id = (await new_media(client, author_h))[0]
    pool = app[pool_key]

    with frozen(stack_root, "redis"):
        post_id = await create_post(pool, int(author["id"]), PostCreate(media_ids=[media_id], caption="while frozen"))

        async def dead_lettered() -> bool:
            return bool(await pool.fetchval(
                "SELECT count(*) FROM dead_letters WHERE consumer = 'feed' AND kind = 'outage'"
                " AND event->'payload'->>'post_id' = $1", str(post_id)))

        await wait_for(dead_lettered, timeout=20)  # every try of the fan-out timed out

    async def in_every_timeline() -> bool:
        scores = [await redis_clean.zscore(Timelines.key(int(user["id"])), str(post_id)) for user, _ in followers]
        return all(score is not None for score in scores)

    await wait_for(in_every_timeline, timeout=20)
    for _, headers in followers:
        assert str(post_id) in await feed_ids(client, headers)
    metrics = await (await client.get("/metrics")).text()
    assert metric(metrics, "glint_dead_letter_replays_total", consumer="feed", outcome="replayed") >= 1
