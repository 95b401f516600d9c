"""`glint stack`: real servers from wheels, reused when running, data kept across down + up."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from redis import Redis

import devstack
from devstack.state import read_state

ROOT = Path(__file__).resolve().parents[2]


def glint_stack(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    env["GLINT_STACK_DIR"] = str(root)
    return subprocess.run([sys.executable, "-m", "app.cli", "stack", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def small_stack(tmp_path: Path):
    root = tmp_path / ".glint"
    ports = {"postgres": devstack.free_port(), "redis": devstack.free_port()}
    yield root, ports
    devstack.destroy(root, log=lambda *a: None)


async def test_up_twice_reuses_the_running_stack_and_data_survives_down_and_up(small_stack):
    root, ports = small_stack
    services = ("postgres", "redis")
    env = devstack.up(root, ports=ports, services=services, log=lambda *a: None)
    pids = {row.name: row.pid for row in devstack.status(root)}
    assert devstack.up(root, ports=ports, services=services, log=lambda *a: None) == env
    assert {row.name: row.pid for row in devstack.status(root)} == pids
    assert devstack.read_env(root)["GLINT_DATABASE_URL"] == env["GLINT_DATABASE_URL"]

    conn = await asyncpg.connect(env["GLINT_DATABASE_URL"])
    await conn.execute("CREATE TABLE kept (v text)")
    await conn.execute("INSERT INTO kept VALUES ('still here')")
    await conn.close()
    Redis.from_url(env["GLINT_REDIS_URL"]).set("kept", "still here")

    devstack.down(root, log=lambda *a: None)
    assert not any(row.alive for row in devstack.status(root))
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    env = devstack.up(root, ports=ports, services=services, log=lambda *a: None)
    conn = await asyncpg.connect(env["GLINT_DATABASE_URL"])
    assert await conn.fetchval("SELECT v FROM kept") == "still here"
    await conn.close()
    assert Redis.from_url(env["GLINT_REDIS_URL"]).get("kept") == b"still here"


def test_status_names_a_child_that_died(small_stack):
    root, ports = small_stack
    devstack.up(root, ports=ports, services=("postgres", "redis"), log=lambda *a: None)
    result = glint_stack(root, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    redis_pid = next(row.pid for row in devstack.status(root) if row.name == "redis")
    os.kill(redis_pid, signal.SIGKILL)
    result = glint_stack(root, "status")
    assert result.returncode == 1
    assert "dead: redis" in result.stdout


async def test_destroy_deletes_the_stack_and_its_data_wherever_it_lives(small_stack):
    root, ports = small_stack
    devstack.up(root, ports=ports, services=("postgres",), log=lambda *a: None)
    data = Path(read_state(root).data_dirs["postgres"])  # under /var/tmp when postgres's user cannot reach root
    assert (data / "data" / "PG_VERSION").is_file()
    devstack.destroy(root, log=lambda *a: None)
    assert not data.exists() and not root.exists()
    assert not any(row.alive for row in devstack.status(root))


async def test_a_new_stack_where_an_earlier_one_was_starts_empty(small_stack):
    root, ports = small_stack
    env = devstack.up(root, ports=ports, services=("postgres",), log=lambda *a: None)
    conn = await asyncpg.connect(env["GLINT_DATABASE_URL"])
    await conn.execute("CREATE TABLE earlier (v text)")
    await conn.close()
    devstack.down(root, log=lambda *a: None)
    shutil.rmtree(root)  # the folder is gone (a temporary one, after /tmp was emptied); data kept elsewhere is not
    env = devstack.up(root, ports=ports, services=("postgres",), log=lambda *a: None)
    conn = await asyncpg.connect(env["GLINT_DATABASE_URL"])
    try:
        assert await conn.fetchval("SELECT to_regclass('earlier')") is None
    finally:
        await conn.close()
