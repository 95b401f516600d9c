"""The test session: one real local stack on free ports, a migrated template database, and per
test a fresh database cloned from it, a flushed Redis and the app built by create_app()."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from argon2 import PasswordHasher
from redis.asyncio import Redis

import devstack
from app.config import Config, load_config
from handlers import auth
from storage import db

TEMPLATE = "glint_template"
_counter = itertools.count(1)

# Passwords in the tests' own app are argon2id at the smallest cost: every test registers and logs
# in users, and at the production cost (64 MiB, 3 passes) each hash or check took 0.1-2 s of a
# shared CPU. What the tests check is who may log in, not the cost; the tests that time logins
# ask for `production_hashing`, and `glint serve` processes hash at the production cost.
_PRODUCTION_HASHER = auth._hasher
_TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def _use_hasher(hasher: PasswordHasher) -> None:
    auth._hasher = hasher
    auth._dummy_hash.cache_clear()  # the unknown-account check hashes at the current cost


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing():
    _use_hasher(_TEST_HASHER)
    yield
    _use_hasher(_PRODUCTION_HASHER)


@pytest.fixture(scope="session", autouse=True)
def one_botocore_loader():
    """Every test's app makes its own S3 client, and a fresh botocore session parses the service
    descriptions anew (0.2-1 s a client); the session's clients share one loader, which reads them
    once. The clients and the S3 server stay real."""
    import aiobotocore.session

    original = aiobotocore.session.get_session
    loader = original().get_component("data_loader")

    def get_session(env_vars=None):
        session = original(env_vars)
        session.register_component("data_loader", loader)
        return session

    aiobotocore.session.get_session = get_session
    yield
    aiobotocore.session.get_session = original


@pytest.fixture
def production_hashing():
    """argon2id at its production cost, for a test that times logins."""
    _use_hasher(_PRODUCTION_HASHER)
    yield
    _use_hasher(_TEST_HASHER)


def _services() -> list[str]:
    return [*devstack.SERVICES, "osmem"]


@pytest.fixture(scope="session")
def stack_root() -> Path:
    """A private folder for this session's stack."""
    root = Path(tempfile.mkdtemp(prefix="glint-test-stack-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_env(request, stack_root: Path) -> dict[str, str]:
    """Start PostgreSQL, Valkey, SeaweedFS, Tansu and osmem once per session, on free ports
    (`TEST_REDIS=cluster` puts every test on the Valkey cluster instead of the single node)."""
    services = _services()
    ports = {name: devstack.free_port() for name in services}  # never the defaults a `make run` uses
    try:  # a start that fails part way still stops what it started
        env = devstack.up(stack_root, ports=ports, services=services, fast=True, log=lambda *a: None)
        base = env["GLINT_DATABASE_URL"].rsplit("/", 1)[0]

        asyncio.run(devstack.fresh_database(base, TEMPLATE))  # what each test's database is cloned from
        if os.environ.get("TEST_REDIS") == "cluster":
            env = {**env, "GLINT_REDIS_URL": request.getfixturevalue("redis_cluster_url")}
        yield env
    finally:
        devstack.destroy(stack_root, log=lambda *a: None)


def make_config(env: dict[str, str], **overrides: object) -> Config:
    """A Config for the session's stack, with overrides."""
    environ = {k: v for k, v in env.items() if k.startswith("GLINT_")}
    environ["GLINT_EVENTS_TRANSPORT"] = "inline"
    environ["GLINT_ACCESS_LOG"] = "false"
    environ["GLINT_JOBS_ENABLED"] = "false"
    return load_config(environ, **overrides)


_finished: list[str] = []


@pytest.fixture
async def database_url(stack_env: dict[str, str]) -> str:
    """A fresh database cloned from the migrated template (earlier tests' databases are dropped
    here, once nothing of theirs can still be using them)."""
    base = stack_env["GLINT_DATABASE_URL"].rsplit("/", 1)[0]
    name = f"test_{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(base + "/postgres")
    try:
        while _finished:
            await conn.execute(f"DROP DATABASE IF EXISTS {_finished.pop()} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await conn.close()
    yield f"{base}/{name}"
    _finished.append(name)


@pytest.fixture(scope="session")
def redis_cluster_url(stack_root: Path) -> str:
    """A 3-primary Valkey cluster, started only when a test asks for it (GLINT_REDIS_URL form)."""
    from devstack.valkey_cluster import start_cluster

    cluster = start_cluster(stack_root / "redis-cluster")
    yield cluster.url
    cluster.stop()


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "redis_cluster: run the test once on one Valkey node and once on "
                                       "a Valkey cluster")


def pytest_generate_tests(metafunc) -> None:
    if metafunc.definition.get_closest_marker("redis_cluster") is not None:
        metafunc.parametrize("redis_target", ["node", "cluster"], indirect=True)


@pytest.fixture
def redis_target(request) -> str:
    """"node" (the session's Valkey) or "cluster" (the Valkey cluster), for the tests marked
    redis_cluster; "node" for every other test."""
    return getattr(request, "param", "node")


@pytest.fixture
def redis_url(request, stack_env: dict[str, str], redis_target: str) -> str:
    """The URL of the Redis the test runs on."""
    if redis_target == "cluster":
        return request.getfixturevalue("redis_cluster_url")
    return stack_env["GLINT_REDIS_URL"]


@pytest.fixture
async def redis_clean(stack_env: dict[str, str], redis_url: str) -> AsyncIterator[Redis]:
    """The test's Valkey (one node or the cluster), emptied for this test."""
    from app.clients import open_redis

    client = open_redis(make_config(stack_env, redis_url=redis_url))
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def config(stack_env: dict[str, str], database_url: str, redis_url: str, redis_clean: Redis) -> Config:
    """The test's Config: its own database, a clean Redis, inline events, no periodic jobs."""
    return make_config(stack_env, database_url=database_url, redis_url=redis_url)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's database, for asserting what was stored."""
    p = await db.create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()


@pytest.fixture
async def client(aiohttp_client, config: Config):
    """A test client of the real app built by create_app(config)."""
    from app.main import create_app

    return await aiohttp_client(create_app(config))


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0,
                   interval: float = 0.02) -> None:
    """Wait until predicate() (plain or async) is true; fail after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    async def check() -> bool:
        result = predicate()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


@pytest.fixture(scope="session")
def replica_base_url(stack_env: dict[str, str], stack_root: Path) -> str:
    """A streaming replica of the session's PostgreSQL (pg_basebackup + a hot standby), started
    only by the tests that ask for it; its URL without a database name."""
    return devstack.start_replica(stack_root, devstack.free_port(), log=lambda *a: None).rsplit("/", 1)[0]


@pytest.fixture
def clock():
    """The app's clock for `clocked_client`: time moves only when the test says so."""
    from tests.support import Clock

    return Clock()


@pytest.fixture
async def clocked_client(aiohttp_client, stack_env: dict[str, str], config: Config, clock):
    """A test client of the real app on the test's clock, with login limits high enough for the many
    logins a test makes."""
    from app.main import create_app
    from handlers.context import clock_key

    app = create_app(make_config(stack_env, database_url=config.database.url, redis_url=config.redis.url,
                                 rate_limit_auth_per_minute=100_000))
    app[clock_key] = clock
    return await aiohttp_client(app)
