"""How long a committed event takes to reach a socket: a like, through the outbox, the consumer
and the bus, to the author's `notification.new`.

    python -m bench.events [--transport kafka|inline|both] [--likes 200] [--interval 0.05] [--out DIR]

Starts a private stack on free ports (PostgreSQL, Valkey, SeaweedFS, Tansu), then for each
transport runs real `glint serve` processes as `make run` starts them and measures:

- first event after start: a server process is spawned; as soon as it answers HTTP, a liker likes
  the author's post; the time from the spawn (and from the like's 201) until the author's socket
  gets the `notification.new`;
- after a restart of one of two processes: process A is stopped with SIGTERM and started again
  while B keeps serving; the author (on B) is liked through B right after A is back, and the time
  until the notification arrives is recorded (A's consumers must take their partitions back
  without waiting for a session timeout);
- steady state: `--likes` like/unlike cycles, one at a time, from the like's response to the
  notification on the socket: p50, p99, max.

It prints one JSON object, and writes it to `--out` when given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import asyncpg

import devstack
from bench.chat import wait_up
from bench.stats import percentile
from storage import db

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"


def _image() -> bytes:
    import pyvips

    return pyvips.Image.black(64, 64).copy(interpretation="srgb").jpegsave_buffer()


def server_env(stack_root: Path, transport: str) -> dict[str, str]:
    """The environment of a `make run` server: nothing GLINT_* but the stack directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    env.update(GLINT_STACK_DIR=str(stack_root), GLINT_EVENTS_TRANSPORT=transport, GLINT_ACCESS_LOG="false",
               GLINT_RATE_LIMIT_PER_HOUR="1000000", GLINT_RATE_LIMIT_AUTH_PER_MINUTE="100000",
               GLINT_RATE_LIMIT_ANONYMOUS_PER_HOUR="1000000")
    return env


@contextlib.asynccontextmanager
async def serve(env: dict[str, str], port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """A `glint serve` process on a port; stopped with SIGTERM (then killed) at the end."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "serve", "--port", str(port), cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        await stop(proc)


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


async def wait_http(session: aiohttp.ClientSession, base: str, proc: asyncio.subprocess.Process) -> None:
    """Until the server answers /healthz, polled every 10 ms (the start-up is what is measured)."""
    await wait_up(base, timeout=180, interval=0.01, alive=lambda: proc.returncode is None)


async def account(session: aiohttp.ClientSession, base: str, username: str) -> tuple[str, dict[str, str]]:
    """Register (if new) and log in; the user id and an Authorization header."""
    async with session.post(base + "/api/accounts/users/register/",
                            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD}):
        pass
    async with session.post(base + "/api/token/", json={"username": username, "password": PASSWORD}) as response:
        tokens = await response.json()
    headers = {"Authorization": f"Bearer {tokens['access']}"}
    async with session.get(base + "/api/accounts/users/me/", headers=headers) as response:
        me = await response.json()
    return me["id"], headers


async def make_post(session: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> str:
    """A one-photo post; its id."""
    form = aiohttp.FormData()
    form.add_field("file", _image(), filename="p.jpg", content_type="image/jpeg")
    async with session.post(base + "/api/media/", data=form, headers=headers) as response:
        media = await response.json()
    async with session.post(base + "/api/posts/", json={"caption": "bench", "media_ids": [media["id"]]},
                            headers=headers) as response:
        return (await response.json())["id"]


class Inbox:
    """The author's socket: every `notification.new` with the monotonic time it arrived."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.arrivals: asyncio.Queue[float] = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT and json.loads(message.data).get("type") == "notification.new":
                self.arrivals.put_nowait(time.monotonic())

    async def next(self, timeout: float = 60.0) -> float:
        """The arrival time of the next notification; NaN if none came within the timeout."""
        try:
            return await asyncio.wait_for(self.arrivals.get(), timeout)
        except asyncio.TimeoutError:
            return math.nan

    async def close(self) -> None:
        self.task.cancel()
        await self.ws.close()


async def like(session: aiohttp.ClientSession, base: str, post_id: str, headers: dict[str, str]) -> float:
    """Like; the monotonic time the answer came back."""
    async with session.post(f"{base}/api/posts/{post_id}/like/", headers=headers) as response:
        assert response.status in (200, 201), await response.text()
    return time.monotonic()


async def unlike(session: aiohttp.ClientSession, base: str, post_id: str, headers: dict[str, str]) -> None:
    async with session.post(f"{base}/api/posts/{post_id}/unlike/", headers=headers) as response:
        assert response.status in (200, 204), await response.text()


async def measure_transport(stack_root: Path, transport: str, likes: int, interval: float) -> dict[str, Any]:
    """The three measurements for one transport."""
    env = server_env(stack_root, transport)
    port_a, port_b = devstack.free_port(), devstack.free_port()
    base_a, base_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    tag = transport[:1] + str(int(time.time()) % 100000)
    out: dict[str, Any] = {"transport": transport}
    async with aiohttp.ClientSession() as session:
        # accounts and a post, made by a server that is then stopped: the measured start is cold
        async with serve(env, port_a) as proc:
            await wait_http(session, base_a, proc)
            author_id, author = await account(session, base_a, f"author{tag}")
            _, liker = await account(session, base_a, f"liker{tag}")
            post_id = await make_post(session, base_a, author)
        spawned = time.monotonic()
        async with serve(env, port_a) as proc_a:
            await wait_http(session, base_a, proc_a)
            answering = time.monotonic()
            inbox = Inbox(await session.ws_connect(f"{base_a.replace('http', 'ws')}/ws", headers=author))
            liked = await like(session, base_a, post_id, liker)
            arrived = await inbox.next()
            out["first_event"] = {"spawn_to_http_s": round(answering - spawned, 3),
                                  "spawn_to_notification_s": round(arrived - spawned, 3),
                                  "like_to_notification_s": round(arrived - liked, 3)}
            await unlike(session, base_a, post_id, liker)
            # steady state, on the warm process
            samples = []
            for _ in range(likes):
                liked = await like(session, base_a, post_id, liker)
                arrived = await inbox.next(30)
                if math.isnan(arrived):
                    out["steady_lost"] = out.get("steady_lost", 0) + 1
                    continue
                samples.append((arrived - liked) * 1000)
                await unlike(session, base_a, post_id, liker)
                await asyncio.sleep(interval)
            samples = sorted(samples) or [math.nan]
            out["steady_ms"] = {"n": len(samples), "p50": round(percentile(samples, 50), 2),
                                "p99": round(percentile(samples, 99), 2), "max": round(samples[-1], 2)}
            await inbox.close()
            # a rolling restart: B joins, A restarts, a like through B reaches the author on B
            async with serve(env, port_b) as proc_b:
                await wait_http(session, base_b, proc_b)
                inbox = Inbox(await session.ws_connect(f"{base_b.replace('http', 'ws')}/ws", headers=author))
                liked = await like(session, base_b, post_id, liker)
                await inbox.next()
                await unlike(session, base_b, post_id, liker)
                await stop(proc_a)
                restarted = time.monotonic()
                async with serve(env, port_a) as proc_a2:
                    await wait_http(session, base_a, proc_a2)
                    liked = await like(session, base_b, post_id, liker)
                    arrived = await inbox.next()
                    out["after_restart"] = {"restart_to_notification_s": round(arrived - restarted, 3),
                                            "like_to_notification_s": round(arrived - liked, 3)}
                await inbox.close()
    del author_id
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="glint-bench-events-"))
    services = ["postgres", "redis", "s3", "kafka"]
    env = devstack.up(root, ports={s: devstack.free_port() for s in services}, services=services, fast=True,
                      log=lambda *a: None)
    try:
        conn = await asyncpg.connect(env["GLINT_DATABASE_URL"])
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        transports = ["kafka", "inline"] if args.transport == "both" else [args.transport]
        results = [await measure_transport(root, t, args.likes, args.interval) for t in transports]
    finally:
        devstack.destroy(root, log=lambda *a: None)
    return {"benchmark": "like -> notification.new on the author's socket", "likes": args.likes,
            "load_average": [round(x, 2) for x in os.getloadavg()], "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("kafka", "inline", "both"), default="both")
    parser.add_argument("--likes", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between like cycles")
    parser.add_argument("--out", type=Path, default=None, help="a folder to write the JSON into")
    args = parser.parse_args()
    import uvloop

    figures = uvloop.run(run(args))
    text = json.dumps(figures, indent=2).replace("NaN", "null")  # null: nothing arrived within the timeout
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"events-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
