"""capacity: how many idle websockets one server process holds, and its memory per socket.

The workers open `connections` sockets to /ws between them (`concurrency` handshakes at a time),
each as a different seeded user, and keep them open and idle (answering the server's pings) until
the end of the round. The server's resident memory is read from /metrics
(process_resident_memory_bytes) before any socket is opened and again once all are open.
Figures: `connect` latency (handshake + hello frame); gauges `sockets_held`, `sockets_failed`,
`server_rss_before_bytes`, `server_rss_loaded_bytes`, `memory_per_socket_bytes`.
Options: connections (2000; the server's and the workers' open-file limits bound it),
settle (2 s after the last socket opened before memory is read).
"""

from __future__ import annotations

import asyncio
import time

from bench.runner import ScenarioSkipped
from bench.scenarios import mint_tokens, option, sample_users


async def server_rss(url: str) -> float | None:
    """The server's resident memory from its /metrics (bytes), or None."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(url.rstrip("/") + "/metrics") as resp:
            text = await resp.text()
    for line in text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    return None


async def prepare(target, options) -> dict:
    before = await server_rss(target.url)
    if before is None:
        raise ScenarioSkipped(f"{target.url}/metrics has no process_resident_memory_bytes")
    connections = int(option(options, "connections", 2000))
    users = sample_users(target, connections, key="any_users")
    if len(users) < connections:
        users = (users * (connections // len(users) + 1))[:connections]
    return {"tokens": mint_tokens(options.jwt_secret, users, options.token_ttl), "rss_before": before,
            "settle": float(option(options, "settle", 2.0))}


async def work(ctx) -> None:
    import aiohttp

    tokens = ctx.plan["tokens"]
    share = tokens[ctx.index::ctx.processes]
    sockets: list = []
    failed = 0
    gate = asyncio.Semaphore(max(1, ctx.clients))
    ws_url = ctx.url.replace("http", "ws", 1) + "/ws"

    async def open_one(token: str) -> None:
        nonlocal failed
        async with gate:
            started = time.perf_counter()
            try:
                ws = await session.ws_connect(ws_url, params={"token": token}, autoping=True, heartbeat=None)
                await ws.receive_json(timeout=ctx.options.timeout)  # hello
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, TypeError) as exc:
                failed += 1
                ctx.recorder.record("connect", time.perf_counter() - started, type(exc).__name__)
                return
            ctx.recorder.record("connect", time.perf_counter() - started)
            sockets.append(ws)

    async def drain(ws) -> None:
        async for _ in ws:  # answer pings (autoping), ignore pushes
            pass

    # sockets hold their connections for the whole round: a session without the pool's limit
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=ctx.options.timeout))
    try:
        await asyncio.gather(*(open_one(t) for t in share))
        readers = [asyncio.create_task(drain(ws)) for ws in sockets]
        ctx.recorder.gauges["sockets_held"] = float(len(sockets))
        ctx.recorder.gauges["sockets_failed"] = float(failed)
        if ctx.index == 0:
            # every worker opens its share at once; the first reads the server's memory once they have settled
            await asyncio.sleep(ctx.plan["settle"])
            rss = await server_rss(ctx.url)
            if rss is not None:
                ctx.recorder.gauges["server_rss_loaded_bytes"] = rss
        while ctx.running:
            await asyncio.sleep(0.2)
        for task in readers:
            task.cancel()
    finally:
        await asyncio.gather(*(asyncio.wait_for(ws.close(), 5) for ws in sockets), return_exceptions=True)
        await session.close()


async def finish(target, options, plan, samples) -> None:
    samples.gauges["server_rss_before_bytes"] = plan["rss_before"]
    held = samples.gauges.get("sockets_held", 0.0)
    loaded = samples.gauges.get("server_rss_loaded_bytes")
    if held and loaded:
        samples.gauges["memory_per_socket_bytes"] = (loaded - plan["rss_before"]) / held
