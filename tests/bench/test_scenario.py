"""One scenario end to end: the feed read, for two seconds, from a worker process against an
in-test server on the seeded data."""

from __future__ import annotations

import json

from bench.runner import Options, Target, run_scenario
from bench.seed import Plan, seed
from tests.conftest import make_config


async def run_seeded(scenario: str, aiohttp_server, stack_env, database_url, tmp_path, duration: float = 2.0):
    """Seed 200 users, serve them from an in-test app, and run a scenario from a worker process."""
    from app.main import create_app

    config = make_config(stack_env, database_url=database_url, rate_limit_per_hour=1_000_000)
    manifest_path = tmp_path / "seed.json"
    await seed(config, Plan(users=200, images=1), manifest_path, log=lambda *_: None)
    server = await aiohttp_server(create_app(config), host="127.0.0.1")
    target = Target("A", str(server.make_url("/")), json.loads(manifest_path.read_text()))
    options = Options(duration=duration, warmup=0.5, concurrency=4, processes=1, jwt_secret=config.auth.jwt_secret)
    [run] = await run_scenario(scenario, [target], options, rounds=1, show_progress=False, log=lambda *_: None)
    return run


async def test_feed_scenario_reads_feeds_from_a_worker_process(aiohttp_server, stack_env, database_url,
                                                               redis_clean, tmp_path):
    run = await run_seeded("feed", aiohttp_server, stack_env, database_url, tmp_path)
    ops = run.samples.latencies
    assert len(ops["feed"]) > 20  # a few hundred requests in two seconds, even on a busy machine
    assert not run.samples.errors
    assert run.rounds[0]["throughput"] > 10


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
