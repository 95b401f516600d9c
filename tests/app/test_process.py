"""The process as an operator runs it: the CLI, migrations, graceful shutdown, the layer contract."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import asyncpg

import devstack
from storage import db
from tests.support import ROOT, glint_env, glint_process, wait_http


@contextlib.asynccontextmanager
async def empty_database(stack_env: dict[str, str], name: str):
    """The URL of a new, unmigrated database; dropped at the end."""
    base = stack_env["GLINT_DATABASE_URL"].rsplit("/", 1)[0]
    admin = await asyncpg.connect(base + "/postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base}/{name}"
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_migrate_applies_every_file_once_and_records_it(stack_env):
    async with empty_database(stack_env, "migrate_check") as url:
        conns = [await asyncpg.connect(url), await asyncpg.connect(url)]
        try:
            assert await db.pending_migrations(conns[0]) == [name for name, _ in db.migration_files()]
            applied = await asyncio.gather(*(db.migrate(c) for c in conns))
            # two migrators at once: the advisory lock makes one apply everything, the other nothing
            assert sorted(map(len, applied)) == [0, len(db.migration_files())]
            assert await db.pending_migrations(conns[0]) == []
            assert await db.migrate(conns[0]) == []
            first, second = [await conns[0].fetchval("SELECT next_id()") for _ in range(2)]
            assert second > first > 0  # time-ordered 64-bit ids
        finally:
            for conn in conns:
                await conn.close()


async def test_serve_on_an_unmigrated_database_exits_saying_to_run_migrate(stack_env):
    async with empty_database(stack_env, "unmigrated") as url:
        args = ("-m", "app.cli", "serve", "--port", str(devstack.free_port()))
        async with glint_process(*args, env=glint_env(stack_env, GLINT_DATABASE_URL=url)) as proc:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert b"glint migrate" in err


async def test_a_bad_setting_stops_start_up_naming_the_variable(stack_env):
    async with glint_process("-m", "app.cli", "serve", env=glint_env(stack_env, GLINT_PORT="eighty")) as proc:
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
    run_server(app, config.server.host, config.server.port, config.server.shutdown_timeout)
    print("exited cleanly", flush=True)
""")


async def test_sigterm_during_a_slow_request_lets_it_finish_and_exits_0(stack_env, database_url):
    port = devstack.free_port()
    env = glint_env(stack_env, GLINT_DATABASE_URL=database_url, GLINT_PORT=str(port))
    async with glint_process("-c", SLOW_SERVER, env=env) as proc:
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


@contextlib.asynccontextmanager
async def serving(stack_env: dict[str, str], database_url: str, command: str):
    """`glint serve|consume` on a free port, answering; yields (base URL, session, process).
    At the end it gets SIGTERM and must exit 0; its stderr is left in `proc.stderr_text`."""
    port = devstack.free_port()
    args = ("-m", "app.cli", command, "--port", str(port))
    async with glint_process(*args, env=glint_env(stack_env, GLINT_DATABASE_URL=database_url)) as proc:
        base = f"http://127.0.0.1:{port}"
        await wait_http(base + "/healthz", proc)
        async with aiohttp.ClientSession() as session:
            yield base, session, proc
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        proc.stderr_text = err.decode()
        assert proc.returncode == 0, proc.stderr_text[-2000:]


async def test_serve_subprocess_answers_readyz_and_logs_each_request(stack_env, database_url):
    async with serving(stack_env, database_url, "serve") as (base, session, proc):
        async with session.get(base + "/readyz") as response:
            assert response.status == 200
        async with session.get(base + "/api/nothing/") as response:
            assert response.status == 404
    # one JSON log line per request, with the route template, status and request id
    lines = [line for line in proc.stderr_text.splitlines() if '"msg": "request"' in line]
    assert any('"status": 404' in line and '"request_id"' in line for line in lines)


def test_the_import_layers_contract_passes():
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout  # the layers, and devstack kept out of them


async def test_consume_serves_only_the_operations_routes_on_its_side_port(stack_env, database_url):
    async with serving(stack_env, database_url, "consume") as (base, session, proc):
        async with session.get(base + "/readyz") as response:
            assert response.status == 200
        async with session.get(base + "/metrics") as response:
            assert "glint_outbox_backlog" in await response.text()
        async with session.post(base + "/api/token/", json={}) as response:
            assert response.status == 404  # no API routes on a worker


async def test_serve_on_a_port_another_process_holds_exits_with_one_line_naming_it(stack_env, database_url):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        async with glint_process("-m", "app.cli", "serve", "--no-consumers", "--port", str(port),
                                 env=glint_env(stack_env, GLINT_DATABASE_URL=database_url)) as proc:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        holder.close()
    assert proc.returncode != 0
    assert f"glint: port {port} on 127.0.0.1 is in use by another process".encode() in err
    assert b"Traceback" not in err
