"""One scenario end to end: the feed read, for two seconds, from a worker process against an
in-test server on the seeded data."""

from __future__ import annotations

import json

from bench.runner import Options, Target, run_scenario
from bench.seed import Plan, seed
from tests.conftest import make_config


async def test_feed_scenario_reads_feeds_from_a_worker_process(aiohttp_server, stack_env, database_url,
                                                               redis_clean, tmp_path):
    from app.main import create_app

    config = make_config(stack_env, database_url=database_url, rate_limit_per_hour=1_000_000)
    manifest_path = tmp_path / "seed.json"
    await seed(config, Plan(users=200, images=1), manifest_path, log=lambda *_: None)
    server = await aiohttp_server(create_app(config), host="127.0.0.1")
    target = Target("A", str(server.make_url("/")), json.loads(manifest_path.read_text()))
    options = Options(duration=2.0, warmup=0.5, concurrency=4, processes=1, jwt_secret=config.jwt_secret)
    [run] = await run_scenario("feed", [target], options, rounds=1, show_progress=False, log=lambda *_: None)
    ops = run.samples.latencies
    assert len(ops["feed"]) > 20  # a few hundred requests in two seconds, even on a busy machine
    assert not run.samples.errors
    assert run.rounds[0]["throughput"] > 10
