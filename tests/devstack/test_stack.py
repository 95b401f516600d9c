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
from devstack import DEFAULT_PORTS
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


async def test_default_ports_taken_by_another_process_move_to_free_ones_and_the_stack_is_found_there(
        tmp_path, listening):
    root = tmp_path / ".glint"
    services = ("postgres", "redis")
    lines: list[str] = []
    with listening(DEFAULT_PORTS["postgres"]), listening(DEFAULT_PORTS["redis"]):
        try:
            env = devstack.up(root, services=services, fast=True, log=lines.append)
            ports = read_state(root).ports
            moved = {name: ports[name] for name in services}
            assert moved["postgres"] != DEFAULT_PORTS["postgres"] and moved["redis"] != DEFAULT_PORTS["redis"]
            said = [line for line in lines if "other ports" in line]
            assert len(said) == 1, lines
            for name in services:
                assert f"{name} {DEFAULT_PORTS[name]} -> {moved[name]}" in said[0]
            written = devstack.read_env(root)
            assert written == env
            assert f"127.0.0.1:{moved['postgres']}/" in written["GLINT_DATABASE_URL"]
            assert f"127.0.0.1:{moved['redis']}" in written["GLINT_REDIS_URL"]
            conn = await asyncpg.connect(written["GLINT_DATABASE_URL"])
            assert await conn.fetchval("SELECT 1") == 1
            await conn.close()
            assert Redis.from_url(written["GLINT_REDIS_URL"]).ping()

            # a second up, and status, find the same processes on the same ports
            rows = {row.name: (row.pid, row.port) for row in devstack.status(root)}
            assert {name: port for name, (_, port) in rows.items()} == moved
            lines.clear()
            assert devstack.up(root, services=services, fast=True, log=lines.append) == env
            assert {row.name: (row.pid, row.port) for row in devstack.status(root)} == rows
            assert not [line for line in lines if "other ports" in line]
            result = glint_stack(root, "status")
            assert result.returncode == 0 and f"port {moved['redis']}" in result.stdout, result.stdout

            # after down, the next up starts on the recorded ports again
            devstack.down(root, log=lambda *a: None)
            assert devstack.up(root, services=services, fast=True, log=lambda *a: None) == env
            assert {row.name: row.port for row in devstack.status(root)} == moved
        finally:
            devstack.destroy(root, log=lambda *a: None)


def test_a_port_asked_for_that_is_taken_is_one_line_naming_it_and_nothing_starts(tmp_path, listening):
    root = tmp_path / ".glint"
    port = devstack.free_port()
    with listening(port):
        try:
            with pytest.raises(devstack.PortsInUse) as raised:
                devstack.up(root, ports={"redis": port}, services=("redis",), fast=True, log=lambda *a: None)
            assert raised.value.ports == {"redis": port}
            result = glint_stack(root, "up", "--port", f"postgres={port}")
            assert result.returncode == 1
            assert result.stderr.strip().splitlines() == [
                f"glint: port {port} (postgres) on 127.0.0.1 is in use by another process; "
                f"stop that process or choose another port: glint stack up --port postgres=PORT"]
            assert devstack.status(root) == []
        finally:
            devstack.destroy(root, log=lambda *a: None)


def test_stack_up_refuses_a_port_named_for_two_services_or_a_service_it_does_not_have(tmp_path):
    root = tmp_path / ".glint"
    result = glint_stack(root, "up", "--port", "postgres=40000", "--port", "redis=40000")
    assert result.returncode == 1 and result.stderr.strip() == \
        "glint: --port names port 40000 for more than one service"
    result = glint_stack(root, "up", "--port", "mysql=3306")
    assert result.returncode == 2 and "'mysql' is not a port of the stack" in result.stderr
    assert not (root / "stack.json").exists()
