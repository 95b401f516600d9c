"""`glint bench soak`: rows of mixed load with the server's RSS, fds, p50/p99 and errors."""

from __future__ import annotations

import json

from bench.runner import Options
from bench.seed import Plan, seed
from bench.soak import soak
from tests.conftest import make_config


async def test_soak_reports_a_row_per_minute_with_the_servers_memory_and_fds(aiohttp_server, stack_env, database_url,
                                                                           redis_clean, tmp_path):
    from app.main import create_app

    config = make_config(stack_env, database_url=database_url, rate_limit_per_hour=1_000_000)
    manifest_path = tmp_path / "seed.json"
    await seed(config, Plan(users=200, images=1), manifest_path, log=lambda *_: None)
    server = await aiohttp_server(create_app(config), host="127.0.0.1")
    options = Options(warmup=0.5, concurrency=4, processes=1, jwt_secret=config.auth.jwt_secret)
    result = await soak(str(server.make_url("/")), json.loads(manifest_path.read_text()), options, minutes=2,
                        minute_seconds=1.5, log=lambda *_: None)
    rows = result["rows"]
    assert [r["minute"] for r in rows] == [1, 2]
    for row in rows:
        assert row["ok"] > 0 and row["errors"] == 0
        assert row["rss_mb"] > 10 and row["fds"] > 5 and row["p99_ms"] >= row["p50_ms"] > 0
    assert result["summary"]["errors"] == 0 and result["summary"]["minutes"] == 2
