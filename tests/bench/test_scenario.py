"""One scenario end to end: the feed read, for two seconds, from a worker process against an
in-test server on the seeded data."""

from __future__ import annotations

import json

import aiohttp
import msgspec

from bench.runner import Options, Target, run_scenario
from bench.seed import Plan, seed
from handlers.common import Page
from handlers.posts import PostOut
from tests.conftest import make_config


async def run_seeded(scenario: str, aiohttp_server, stack_env, database_url, tmp_path, duration: float = 2.0,
                     reference: bool = False, extra: dict | None = None, concurrency: int = 4, **settings):
    """Seed 200 users, serve them from an in-test app, and run a scenario from a worker process
    (then against the reference ceiling too, with reference=True)."""
    from app.main import create_app
    from bench.reference import build

    config = make_config(stack_env, database_url=database_url, rate_limit_per_hour=1_000_000, **settings)
    manifest_path = tmp_path / "seed.json"
    await seed(config, Plan(users=200, images=1), manifest_path, log=lambda *_: None)
    manifest = json.loads(manifest_path.read_text())
    servers = [await aiohttp_server(create_app(config), host="127.0.0.1")]
    if reference:
        servers.append(await aiohttp_server(build(config.redis.url), host="127.0.0.1"))
    targets = [Target(label, str(s.make_url("/")), manifest) for label, s in zip("AR", servers)]
    options = Options(duration=duration, warmup=0.5, concurrency=concurrency, processes=1, jwt_secret=config.auth.jwt_secret,
                      database_url=config.database.url, redis_url=config.redis.url, extra=extra or {})
    runs = await run_scenario(scenario, targets, options, rounds=1, show_progress=False, log=lambda *_: None)
    return runs if reference else runs[0]


async def test_feed_scenario_reads_feeds_from_a_worker_process(aiohttp_server, stack_env, database_url,
                                                               redis_clean, tmp_path):
    run, ref = await run_seeded("feed", aiohttp_server, stack_env, database_url, tmp_path, reference=True)
    ops = run.samples.latencies
    assert len(ops["feed"]) > 20  # a few hundred requests in two seconds, even on a busy machine
    assert not run.samples.errors and not ref.samples.errors
    assert run.rounds[0]["throughput"] > 10 and ref.rounds[0]["throughput"] > 10
    # the server's CPU per page from its /metrics (the in-test servers share the test's process)
    assert run.samples.gauges["server_cpu_ms_per_op"] > 0 and ref.samples.gauges["server_cpu_ms_per_op"] > 0
    # and the stores' (the session's PostgreSQL and Valkey run on this machine)
    assert run.samples.gauges["postgres_cpu_ms_per_op"] > 0 and run.samples.gauges["redis_cpu_ms_per_op"] > 0
    assert run.rounds[0]["postgres_cpu_seconds"] > 0 and ref.samples.gauges["redis_cpu_ms_per_op"] > 0
    assert min(run.samples.values["feed_bytes"]) > 1000  # seeded timelines: pages of posts
    async with aiohttp.ClientSession() as session:  # the ceiling's page has the shape of glint's
        token = run.plan["tokens"][0]
        async with session.get(ref.target.url + "api/posts/feed/", headers={"Authorization": f"Bearer {token}"}) as page:
            msgspec.json.decode(await page.read(), type=Page[PostOut])


async def test_mixed_scenario_holds_sockets_and_sends_messages(aiohttp_server, stack_env, database_url,
                                                              redis_clean, tmp_path):
    run = await run_seeded("mixed", aiohttp_server, stack_env, database_url, tmp_path)
    assert "connect" not in run.samples.errors
    assert len(run.samples.latencies.get("message", [])) > 5


async def test_messages_scenario_sends_over_sockets_from_a_worker_process(aiohttp_server, stack_env, database_url,
                                                                          redis_clean, tmp_path):
    run = await run_seeded("messages", aiohttp_server, stack_env, database_url, tmp_path)
    assert "connect" not in run.samples.errors
    assert len(run.samples.latencies.get("message", [])) > 5


async def test_fanout_scenario_times_the_push_into_timelines(aiohttp_server, stack_env, database_url,
                                                             redis_clean, tmp_path):
    run = await run_seeded("fanout", aiohttp_server, stack_env, database_url, tmp_path, duration=3.0,
                           concurrency=1, extra={"pause": 0.1})
    assert not run.samples.errors
    assert run.samples.values["fanout_seconds"] and "fanout_incomplete" not in run.samples.values
    assert max(run.samples.values["fanout_timelines"]) > 1


async def test_fanout_scenario_via_feed_times_the_celebrity_path_on_followers_pages(
        aiohttp_server, stack_env, database_url, redis_clean, tmp_path):
    # every author is a celebrity here: nothing is pushed to followers, their pages merge the post
    run = await run_seeded("fanout", aiohttp_server, stack_env, database_url, tmp_path, duration=3.0,
                           concurrency=1, extra={"pause": 0.1, "via": "feed", "readers": 2, "followers": "30"},
                           celebrity_threshold=1)
    assert not run.samples.errors
    assert run.samples.values["visible_seconds"] and "fanout_incomplete" not in run.samples.values
    # each post was watched on the readers' pages (a post straddling the warm-up's end had some of its
    # page reads before the measured seconds)
    assert len(run.samples.latencies["feed"]) >= len(run.samples.values["visible_seconds"])
