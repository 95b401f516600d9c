"""The load scenarios of `glint bench`, one module each.

A scenario module has:
- `async def prepare(target, options) -> dict`: in the parent, before any load; checks that the
  server serves what the scenario needs (else raises ScenarioSkipped) and returns the plan every
  worker gets (tokens, ids; picklable);
- `async def work(ctx)` (or `work(ctx, state)` with `async def setup(ctx) -> state` run before the
  common start, and an optional `teardown(ctx, state)`): in each worker process, until ctx.running
  is false, timing operations with ctx.request / ctx.record;
- optionally `async def finish(target, options, plan, samples)`: in the parent, after the rounds,
  to add figures measured on the server (gauges) to the samples.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Awaitable, Callable

from bench.runner import ScenarioSkipped, Target


SEED_SESSIONS_SQL = (
    # a minted token names session id = user id; sessions are the truth of which tokens live
    "INSERT INTO sessions (id, user_id, user_agent) SELECT id, id, 'glint bench' FROM users"
    " WHERE id = ANY($1::bigint[]) OR $1 IS NULL ON CONFLICT (id) DO NOTHING")


async def open_seeded_sessions(conn, user_ids: list[int] | None = None) -> None:
    """The sessions the minted tokens of seeded users (all, or these) belong to."""
    await conn.execute(SEED_SESSIONS_SQL, user_ids)


def mint_tokens(secret: str, user_ids: list[int], ttl: int) -> list[str]:
    """Access tokens for seeded users, signed with the server's JWT secret (logging in 10,000
    users through argon2 would take minutes and trip the login rate limit); each names session
    id = user id, which the seed opens (open_seeded_sessions)."""
    from handlers.auth import make_access_token

    return [make_access_token(secret, uid, uid, ttl) for uid in user_ids]


def sample_users(target: Target, count: int, key: str = "users", seed: int = 7) -> list[int]:
    """Up to `count` user ids of the manifest (active users by default: they have timelines)."""
    users = list(target.manifest.get(key) or [])
    if not users:
        raise ScenarioSkipped("the seed manifest has no users: run `glint bench seed`")
    random.Random(seed).shuffle(users)
    return users[:count]


async def served_routes(url: str) -> set[str]:
    """'METHOD /path' of every route the server's OpenAPI document lists."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        try:
            async with session.get(url.rstrip("/") + "/api/openapi.json") as resp:
                if resp.status != 200:
                    raise ScenarioSkipped(f"{url}/api/openapi.json answered {resp.status}")
                doc = await resp.json()
        except aiohttp.ClientError as exc:
            raise ScenarioSkipped(f"cannot reach {url}: {exc}") from None
    return {f"{method.upper()} {path}" for path, item in doc.get("paths", {}).items() for method in item}


async def require_routes(url: str, *routes: str) -> set[str]:
    """Skip the scenario unless the server serves every route named."""
    served = await served_routes(url)
    missing = [r for r in routes if r not in served]
    if missing:
        raise ScenarioSkipped(f"{url} does not serve {', '.join(missing)} (not landed yet?)")
    return served


def option(options: Any, name: str, default: Any) -> Any:
    """A scenario option from --set NAME=VALUE."""
    return options.extra.get(name, default)


async def open_socket(ctx: Any, ws_url: str, token: str) -> Any:
    """A client's /ws after its hello frame; None (recorded as a "connect" error) when refused,
    so a refused socket is an error of the run, never a crash."""
    started = time.perf_counter()
    try:
        ws = await ctx.session.ws_connect(ws_url, params={"token": token}, heartbeat=None)
        await ws.receive_json(timeout=ctx.options.timeout)  # hello
    except Exception as exc:
        ctx.record("connect", time.perf_counter() - started, type(exc).__name__)
        await asyncio.sleep(0.5)
        return None
    return ws


def socket_url(ctx: Any) -> str:
    """The run's /ws address."""
    return ctx.url.replace("http", "ws", 1) + "/ws"


async def seated_sockets(ctx: Any, run: Callable[[int, Any, Any], Awaitable[None]]) -> None:
    """Each client of this worker on its seat of the plan's `seats` (taken round robin; a seat's
    first item is its token) with its /ws open: `run(number, seat, ws)`, the socket closed after.
    A client whose socket is refused does nothing more (open_socket records it)."""
    seats = ctx.plan["seats"]

    async def client(number: int) -> None:
        seat = seats[number % len(seats)]
        ws = await open_socket(ctx, socket_url(ctx), seat[0])
        if ws is None:
            return
        try:
            await run(number, seat, ws)
        finally:
            await ws.close()

    await ctx.each_client(client)
