"""The process as an operator runs it: the CLI, migrations, graceful shutdown, the layer contract."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import asyncpg

from app import stack
from storage import db

ROOT = Path(__file__).resolve().parents[2]


def glint_env(stack_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    env.update({k: v for k, v in stack_env.items() if k.startswith("GLINT_")})
    env.update(GLINT_EVENTS_TRANSPORT="inline", GLINT_STACK_DIR="/nonexistent-glint-stack", **extra)
    return env


async def wait_http(url: str, proc=None, timeout: float = 60.0) -> None:
    """Wait until a URL answers; fail at once (with its stderr) if the process serving it exits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if proc is not None and proc.returncode is not None:
                err = await proc.stderr.read()
                raise AssertionError(f"the server exited with {proc.returncode}: {err.decode()[-3000:]}")
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline:
                raise AssertionError(f"{url} never answered")
            await asyncio.sleep(0.05)


async def test_migrate_applies_every_file_once_and_records_it(stack_env):
    base = stack_env["GLINT_DATABASE_URL"].rsplit("/", 1)[0]
    admin = await asyncpg.connect(base + "/postgres")
    await admin.execute("DROP DATABASE IF EXISTS migrate_check WITH (FORCE)")
    await admin.execute("CREATE DATABASE migrate_check")
    try:
        conn = await asyncpg.connect(base + "/migrate_check")
        try:
            assert await db.pending_migrations(conn) == [name for name, _ in db.migration_files()]
            conns = [conn, await asyncpg.connect(base + "/migrate_check")]
            applied = await asyncio.gather(*(db.migrate(c) for c in conns))
            # two migrators at once: the advisory lock makes one apply everything, the other nothing
            assert sorted(map(len, applied)) == [0, len(db.migration_files())]
            assert await db.pending_migrations(conn) == []
            assert await db.migrate(conn) == []
            first, second = await conn.fetchval("SELECT next_id()"), await conn.fetchval("SELECT next_id()")
            assert second > first > 0  # time-ordered 64-bit ids
            await conns[1].close()
        finally:
            await conn.close()
    finally:
        await admin.execute("DROP DATABASE IF EXISTS migrate_check WITH (FORCE)")
        await admin.close()


async def test_serve_on_an_unmigrated_database_exits_saying_to_run_migrate(stack_env):
    base = stack_env["GLINT_DATABASE_URL"].rsplit("/", 1)[0]
    admin = await asyncpg.connect(base + "/postgres")
    await admin.execute("DROP DATABASE IF EXISTS unmigrated WITH (FORCE)")
    await admin.execute("CREATE DATABASE unmigrated")
    await admin.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "serve", "--port", str(stack.free_port()),
        env=glint_env(stack_env, GLINT_DATABASE_URL=base + "/unmigrated"), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert b"glint migrate" in err


async def test_a_bad_setting_stops_start_up_naming_the_variable(stack_env):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "serve", env=glint_env(stack_env, GLINT_PORT="eighty"), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert b"GLINT_PORT" in err


SLOW_SERVER = textwrap.dedent("""
    import asyncio, sys
    from aiohttp import web
    from app.cli import run_server
    from app.config import load_config
    from app.main import create_app

    config = load_config()
    app = create_app(config)

    async def slow(request):
        await asyncio.sleep(1.5)
        return web.json_response({"finished": True})

    app.router.add_get("/slow", slow)
    run_server(app, config.host, config.port, config.shutdown_timeout)
    print("exited cleanly", flush=True)
""")


async def test_sigterm_during_a_slow_request_lets_it_finish_and_exits_0(stack_env, database_url):
    port = stack.free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SLOW_SERVER, cwd=ROOT,
        env=glint_env(stack_env, GLINT_DATABASE_URL=database_url, GLINT_PORT=str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        async with aiohttp.ClientSession() as session:
            request = asyncio.ensure_future(session.get(f"http://127.0.0.1:{port}/slow"))
            await asyncio.sleep(0.3)  # the request is in flight on the server
            proc.send_signal(signal.SIGTERM)
            response = await request
            assert response.status == 200
            assert await response.json() == {"finished": True}
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b"exited cleanly" in out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_subprocess_answers_readyz(stack_env, database_url):
    port = stack.free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "serve", "--port", str(port), cwd=ROOT,
        env=glint_env(stack_env, GLINT_DATABASE_URL=database_url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{port}/api/nothing/") as response:
                assert response.status == 404
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        # one JSON log line per request, with the route template, status and request id
        lines = [line for line in err.decode().splitlines() if '"msg": "request"' in line]
        assert any('"status": 404' in line and '"request_id"' in line for line in lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_import_layers_contract_passes():
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken" in result.stdout


async def test_consume_serves_only_the_operations_routes_on_its_side_port(stack_env, database_url):
    port = stack.free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "consume", "--port", str(port), cwd=ROOT,
        env=glint_env(stack_env, GLINT_DATABASE_URL=database_url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert "glint_events_handled_total" in await response.text() or response.status == 200
            async with session.post(f"http://127.0.0.1:{port}/api/token/", json={}) as response:
                assert response.status == 404  # no API routes on a worker
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
