"""The seeder on a tiny graph against the test database: exact counters, gapless message
sequences, media rows on real images, timelines equal to what a rebuild makes, a manifest; and
the power law of follower counts on a larger graph made in memory."""

from __future__ import annotations

import json
import statistics
from datetime import datetime, timezone

from bench.seed import Plan, generate, seed
from storage import timelines as tl
from storage.timelines import SENTINEL, Timelines


async def test_seed_loads_a_consistent_graph_and_its_timelines(config, pool, redis_clean, tmp_path):
    manifest_path = tmp_path / "seed.json"
    report = await seed(config, Plan(users=300, images=2), manifest_path, log=lambda *_: None)
    assert report.counts["users"] == 300 and report.counts["follows"] > 300
    assert report.counts["posts"] > 0 and report.counts["messages"] > 0 and report.counts["timelines"] > 0

    wrong_followers = await pool.fetchval(
        "SELECT count(*) FROM users u WHERE followers_count <> (SELECT count(*) FROM follows WHERE followee_id = u.id)"
        " OR following_count <> (SELECT count(*) FROM follows WHERE follower_id = u.id)"
        " OR posts_count <> (SELECT count(*) FROM posts WHERE author_id = u.id)")
    assert wrong_followers == 0
    wrong_posts = await pool.fetchval(
        "SELECT count(*) FROM posts p WHERE like_count <> (SELECT count(*) FROM likes WHERE post_id = p.id)"
        " OR comment_count <> (SELECT count(*) FROM comments WHERE post_id = p.id)")
    assert wrong_posts == 0
    unlisted = await pool.fetchval(  # the counts were copied: the celebrity list is made from them
        "SELECT count(*) FROM users u WHERE followers_count >= $1"
        " AND NOT EXISTS (SELECT 1 FROM celebrities c WHERE c.user_id = u.id)", config.feed.celebrity_threshold)
    assert unlisted == 0 and await pool.fetchval("SELECT followers FROM celebrity_floor") <= config.feed.celebrity_threshold
    gaps = await pool.fetchval(
        "SELECT count(*) FROM conversations c WHERE last_seq <> (SELECT count(*) FROM messages WHERE conversation_id = c.id)"
        " OR last_seq <> (SELECT max(seq) FROM messages WHERE conversation_id = c.id)")
    assert gaps == 0
    without_media = await pool.fetchval(
        "SELECT count(*) FROM posts p WHERE NOT EXISTS (SELECT 1 FROM post_media WHERE post_id = p.id)")
    assert without_media == 0
    keys = {r["original_key"] for r in await pool.fetch("SELECT DISTINCT original_key FROM media")}
    assert keys == {"bench/images/0/original", "bench/images/1/original"}
    # ids of seeded rows sort by time, like the server's own
    assert await pool.fetchval("SELECT bool_and(abs(extract(epoch FROM id_time(id) - created_at)) < 1) FROM posts")

    manifest = json.loads(manifest_path.read_text())
    assert manifest["users"] and manifest["conversations"] and manifest["search_terms"]
    timelines = Timelines(redis_clean, cap=config.feed.cap)
    for user_id in manifest["users"][:10]:
        stored = await redis_clean.zrange(timelines.key(user_id), 0, -1)
        assert SENTINEL.encode() in stored
        rebuilt = await tl.rebuild_ids(pool, user_id, config.feed.celebrity_threshold, config.feed.cap)
        assert sorted(int(m) for m in stored if m != SENTINEL.encode()) == sorted(rebuilt)


async def test_seed_refuses_a_database_with_users_unless_reset(config, tmp_path):
    await seed(config, Plan(users=20, images=0, timelines=False), tmp_path / "a.json", log=lambda *_: None)
    try:
        await seed(config, Plan(users=20, images=0, timelines=False), tmp_path / "b.json", log=lambda *_: None)
    except RuntimeError as exc:
        assert "--reset" in str(exc)
    else:
        raise AssertionError("a second seed over existing users was not refused")
    report = await seed(config, Plan(users=20, images=0, timelines=False), tmp_path / "c.json", do_reset=True,
                        log=lambda *_: None)
    assert report.counts["users"] == 20


async def test_a_reset_drops_the_explore_ranking_of_the_posts_it_removed(config, tmp_path):
    from redis.asyncio import Redis

    from storage import explore

    await seed(config, Plan(users=20, images=0), tmp_path / "a.json", log=lambda *_: None)
    redis = Redis.from_url(config.redis.url)
    try:
        await redis.zadd(explore.KEY, {"12345": 1.0})  # a post of the seed about to be removed
        await seed(config, Plan(users=20, images=0), tmp_path / "b.json", do_reset=True, log=lambda *_: None)
        assert not await redis.exists(explore.KEY)  # the bench's explore computes a ranking of the new posts
    finally:
        await redis.aclose()


def test_follower_counts_follow_a_power_law():
    g = generate(Plan(users=20_000), "hash", [], datetime.now(timezone.utc), celebrity_threshold=10_000)
    counts = sorted(g.followers_count)
    median = statistics.median(counts)
    assert counts[-1] > 50 * median  # a few accounts are followed by a large share of everyone
    assert sum(c > 2_000 for c in counts) < 50  # ... but only a few
