"""Helpers the tests share (no test module imports another): users and logins through the real
API, sockets and frames, media, posts, stories and the other things tests make, glint processes,
and reading Prometheus text. Fixtures live in tests/conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import re
import struct
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pyvips
from aiohttp import web

import devstack
from app.main import account_job_factory
from handlers.admin import create_superuser
from handlers.context import config_key, s3_key
from storage.timelines import Timelines
from tests.conftest import wait_for

_names = itertools.count(1)
PASSWORD = "correct horse battery"


async def register(client, username: str | None = None, password: str = "correct horse battery", **extra) -> dict:
    """Register a user through the API; returns the created user's JSON."""
    username = username or f"user{next(_names)}"
    body = {"username": username, "email": f"{username}@example.com", "password": password, **extra}
    response = await client.post("/api/accounts/users/register/", json=body)
    assert response.status == 201, await response.text()
    return await response.json()


async def login(client, username: str, password: str = "correct horse battery") -> dict:
    """Log in; returns {access, refresh}."""
    response = await client.post("/api/token/", json={"username": username, "password": password})
    assert response.status == 200, await response.text()
    return await response.json()


async def user_with_token(client, username: str | None = None, **extra) -> tuple[dict, dict[str, str]]:
    """A new user and the Authorization header of a fresh login."""
    user = await register(client, username, **extra)
    tokens = await login(client, user["username"])
    return user, {"Authorization": f"Bearer {tokens['access']}"}


class Clock:
    """The app's clock in tests: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


# ----------------------------------------------------------------------------- Sockets and conversations

async def user_and_token(client, **extra) -> tuple[dict, str]:
    """A new user and a fresh access token."""
    user = await register(client, **extra)
    tokens = await login(client, user["username"])
    return user, tokens["access"]


def bearer(token: str | dict) -> dict[str, str]:
    """The Authorization header of an access token (or of a login's {access, refresh} pair)."""
    return {"Authorization": f"Bearer {token['access'] if isinstance(token, dict) else token}"}


async def all_pages(client, path: str, headers) -> list[dict]:
    """Every result of a cursor-paginated list, following `next` from `path` to the last page."""
    results: list[dict] = []
    while path:
        body = await (await client.get(path, headers=headers)).json()
        results += body["results"]
        path = body["next"]
    return results


async def open_socket(session_or_client, token: str, base: str = ""):
    """A websocket to /ws, past its hello frame."""
    ws = await session_or_client.ws_connect(f"{base}/ws?token={token}")
    hello = await next_frame(ws)
    assert hello["type"] == "hello", hello
    return ws


async def next_frame(ws, timeout: float = 10.0) -> dict[str, Any]:
    """The next JSON frame."""
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.data is not None and isinstance(msg.data, (str, bytes)), msg
    return json.loads(msg.data)


async def frame_of(ws, type_: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
    """Read frames until one of this type (and matching fields) arrives; others are skipped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        frame = await next_frame(ws, max(deadline - loop.time(), 0.01))
        if frame["type"] == type_ and all(frame.get(k) == v for k, v in match.items()):
            return frame


async def start_conversation(client, token: str, *member_ids: str, title: str = "") -> dict:
    response = await client.post("/api/conversations/", json={"member_ids": list(member_ids), "title": title},
                                 headers=bearer(token))
    assert response.status in (200, 201), await response.text()
    return await response.json()


# ----------------------------------------------------------------------------- Media

def jpeg(width: int, height: int, noise: bool = False, **save: object) -> bytes:
    """A JPEG of the given size; noise makes it incompressible (so truncation cuts pixels)."""
    if noise:
        band = pyvips.Image.gaussnoise(width, height).cast("uchar")
        image = band.bandjoin([band, band])
    else:
        image = (pyvips.Image.black(width, height) + [200, 40, 40]).cast("uchar")
    return image.copy(interpretation="srgb").jpegsave_buffer(**save)


def mp4(moov: bool = True) -> bytes:
    """A minimal MP4 container: ftyp, moov, mdat."""
    ftyp = b"ftyp" + b"isom" + struct.pack(">I", 0x200) + b"isommp41"
    boxes = [ftyp, b"moov" + b"\x00" * 8 if moov else b"free", b"mdat" + b"\x01" * 1000]
    return b"".join(struct.pack(">I", len(b) + 4) + b for b in boxes)


def form(data: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg") -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", io.BytesIO(data), filename=filename, content_type=content_type)
    return body


async def upload(client, headers, data: bytes, **kwargs):
    return await client.post("/api/media/", data=form(data, **kwargs), headers=headers)


# ----------------------------------------------------------------------------- Posts

async def new_media(client, headers, count: int = 1) -> list[str]:
    """Upload `count` small images as the given user."""
    ids = []
    for _ in range(count):
        response = await upload(client, headers, jpeg(64, 48))
        assert response.status == 201, await response.text()
        ids.append((await response.json())["id"])
    return ids


async def new_post(client, headers, caption: str = "", **extra) -> dict:
    media_ids = await new_media(client, headers)
    response = await client.post("/api/posts/", json={"caption": caption, "media_ids": media_ids, **extra},
                                 headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def events(pool, type_: str) -> list[dict]:
    rows = await pool.fetch("SELECT key, payload FROM outbox WHERE topic = 'posts' AND type = $1 ORDER BY id", type_)
    return [{"key": r["key"], **r["payload"]} for r in rows]


# ----------------------------------------------------------------------------- Feed

async def feed_ids(client, headers, **query) -> list[str]:
    response = await client.get("/api/posts/feed/", headers=headers, params=query)
    assert response.status == 200, await response.text()
    return [p["id"] for p in (await response.json())["results"]]


async def follow(client, headers, user) -> None:
    response = await client.post(f"/api/accounts/users/{user['id']}/follow/", headers=headers)
    assert response.status in (200, 201), await response.text()


async def followed_post(client, redis, caption: str = "a post") -> tuple[dict, dict, dict, dict]:
    """A reader following an author (timeline built), and a post of the author's already fanned out."""
    reader, reader_h = await user_with_token(client)
    author, author_h = await user_with_token(client)
    await follow(client, reader_h, author)
    await feed_ids(client, reader_h)
    post = await new_post(client, author_h, caption)
    await wait_for(lambda: in_timeline(redis, reader, post["id"]))
    return reader_h, author_h, post, reader


async def timeline(redis, user) -> list[str]:
    return [m.decode() for m in await redis.zrevrange(Timelines.key(int(user["id"])), 0, -1) if m != b"0"]


async def in_timeline(redis, user, post_id: str) -> bool:
    return await redis.zscore(Timelines.key(int(user["id"])), post_id) is not None


# ----------------------------------------------------------------------------- Stories

async def new_story(client, headers, caption: str = "", **extra) -> dict:
    (media_id,) = await new_media(client, headers)
    response = await client.post("/api/stories/", json={"media_id": media_id, "caption": caption, **extra},
                                 headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def tray(client, headers) -> list[dict]:
    response = await client.get("/api/stories/feed/", headers=headers)
    assert response.status == 200, await response.text()
    return (await response.json())["results"]


async def view(client, headers, story) -> int:
    return (await client.post(f"/api/stories/{story['id']}/view/", headers=headers)).status


# ----------------------------------------------------------------------------- Messages

async def send(client, token: str, conversation_id: str, client_id: str, text: str = "hello", **extra):
    return await client.post(f"/api/conversations/{conversation_id}/messages/",
                             json={"client_id": client_id, "text": text, **extra}, headers=bearer(token))


# ----------------------------------------------------------------------------- Notifications

async def notifications(client, headers, **query) -> list[dict]:
    response = await client.get("/api/notifications/", params=query, headers=headers)
    assert response.status == 200, await response.text()
    return (await response.json())["results"]


async def wait_notifications(client, headers, n: int, **query) -> list[dict]:
    """The list once it has (at least) n notifications."""
    found: list[dict] = []

    async def enough() -> bool:
        found[:] = await notifications(client, headers, **query)
        return len(found) >= n

    await wait_for(enough)
    return found


# ----------------------------------------------------------------------------- Admins and moderators

async def admin_headers(client, pool, username: str = "root") -> tuple[dict, dict[str, str]]:
    """An admin made as `glint createsuperuser` makes one, logged in."""
    row = await create_superuser(pool, username, f"{username}@example.com", "correct horse battery")
    tokens = await login(client, username)
    return {"id": str(row["id"]), "username": username}, {"Authorization": f"Bearer {tokens['access']}"}


async def moderator_headers(client, admin_h) -> tuple[dict, dict[str, str]]:
    """A new account an admin made moderator."""
    user, headers = await user_with_token(client)
    response = await client.patch(f"/api/admin/users/{user['id']}/", headers=admin_h, json={"role": "moderator"})
    assert response.status == 200, await response.text()
    return user, headers


# ----------------------------------------------------------------------------- Sessions

async def me_status(client, pair: dict) -> int:
    return (await client.get("/api/accounts/users/me/", headers=bearer(pair))).status


# ----------------------------------------------------------------------------- Stored objects

async def objects_of(client, user_id: str) -> list[str]:
    listing = await client.app[s3_key].list_objects_v2(Bucket=client.app[config_key].s3.bucket,
                                                       Prefix=f"media/{user_id}/")
    return [o["Key"] for o in listing.get("Contents", [])]


# ----------------------------------------------------------------------------- Account deletion

async def run_erasure(client) -> int:
    """One run of the app's erasure job, as the job runner would make it (on the test's clock)."""
    (job,) = [j for j in account_job_factory(client.app) if j.name == "erase_deleted_accounts"]
    return await job.fn()


async def delete_account(client, pair: dict, password: str = PASSWORD):
    return await client.delete("/api/accounts/users/me/", json={"password": password}, headers=bearer(pair))


# ----------------------------------------------------------------------------- Users in the table, a push endpoint

_table_users = itertools.count(1)


async def make_users(pool, n: int) -> list[int]:
    """Users straight in the table (these tests are about events, not registration)."""
    ids = []
    for _ in range(n):
        name = f"nc{os.getpid()}_{next(_table_users)}"
        ids.append(await pool.fetchval(
            "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, 'x') RETURNING id",
            name, f"{name}@example.com"))
    return ids


async def start_endpoint(answers: dict[str, list[int]]) -> tuple[web.AppRunner, str, dict[str, list[dict]]]:
    """A local push service: each path answers its statuses in turn (the last one repeats)."""
    seen: dict[str, list[dict]] = {}

    async def receive(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        seen.setdefault(name, []).append({"body": await request.json(), "ttl": request.headers.get("TTL")})
        statuses = answers[name]
        status = statuses[min(len(seen[name]), len(statuses)) - 1]
        return web.Response(status=status, headers={"Retry-After": "0"} if status == 429 else None)

    app = web.Application()
    app.router.add_post("/push/{name}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = devstack.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/push/", seen


# ----------------------------------------------------------------------------- glint processes

ROOT = Path(__file__).resolve().parents[1]


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
                err = await proc.stderr.read() if proc.stderr is not None else b"(its stderr went elsewhere)"
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


@contextlib.asynccontextmanager
async def glint_process(*args: str, env: dict[str, str]):
    """A glint process (a `python -m app.cli` or `python -c` command line); killed if still running at the end."""
    proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=ROOT, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ----------------------------------------------------------------------------- glint serve processes

async def start_glint(stack_env: dict[str, str], database_url: str) -> tuple[asyncio.subprocess.Process, str]:
    """A `glint serve` process on a free port; (process, base url) once it answers."""
    port = devstack.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    env.update({k: v for k, v in stack_env.items() if k.startswith("GLINT_")})
    env.update(GLINT_DATABASE_URL=database_url, GLINT_EVENTS_TRANSPORT="inline", GLINT_ACCESS_LOG="false",
               GLINT_JOBS_ENABLED="false", GLINT_STACK_DIR="/nonexistent-glint-stack", GLINT_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "serve", "--no-consumers", "--port", str(port), cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(base + "/healthz") as response:
                    if response.status == 200:
                        return proc, base
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline or proc.returncode is not None:
                raise AssertionError("glint serve did not start")
            await asyncio.sleep(0.1)


async def new_user(session, base: str, name: str) -> tuple[dict, str]:
    body = {"username": name, "email": f"{name}@example.com", "password": "correct horse battery"}
    async with session.post(base + "/api/accounts/users/register/", json=body) as response:
        assert response.status == 201, await response.text()
        user = await response.json()
    async with session.post(base + "/api/token/", json={"username": name, "password": body["password"]}) as response:
        return user, (await response.json())["access"]


# ----------------------------------------------------------------------------- Prometheus text

def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from the Prometheus text format (None when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.M)
    return float(found.group(1)) if found else None


# ----------------------------------------------------------------------------- PromQL

_PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on",
             "ignoring", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (functions/labels excluded)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    s = re.sub(r"\{[^}]*\}", "", s)                         # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)                        # range / subquery
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        tok = m.group(0)
        if tok.lower() in _PROMQL_KEYWORDS:
            continue
        if s[m.end():].lstrip().startswith("("):        # function / aggregation
            continue
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] in ".$"):
            continue                                     # 1e3, 0.5e-1, $var
        names.add(tok)
    return names
