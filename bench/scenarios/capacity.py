"""capacity: how many idle websockets one server process holds, and its memory per socket.

The workers open `connections` sockets to /ws between them (`concurrency` handshakes at a time),
each as a different seeded user, and keep them open and idle (answering the server's pings) until
the end of the round. The server's resident memory is read from /metrics
(process_resident_memory_bytes) before any socket is opened and again once all are open.
Once they are in, the first worker waits for the server's next heartbeat sweep over them
(glint_ws_sweep_seconds and glint_ws_sweep_sockets in /metrics, where the server exports them).
Figures: `connect` latency (handshake + hello frame); gauges `sockets_held`, `sockets_failed`,
`server_rss_before_bytes`, `server_rss_loaded_bytes`, `memory_per_socket_bytes`, and where the
server exports its sweep: `sweep_sockets`, `sweep_cpu_seconds`, `sweep_wall_seconds`, and the
projections `projected_rss_100k_bytes`, `projected_sweep_cpu_100k_seconds` (linear in sockets).
Options: connections (2000; the workers raise their open-file limit to the hard limit, and so
does `glint serve`), settle (2 s after the last socket opened before memory is read), sweep_wait
(seconds to wait for that sweep, default 40: a heartbeat of 25 s and then some).
"""

from __future__ import annotations

import asyncio
import time

from bench.runner import ScenarioSkipped
from bench.scenarios import mint_tokens, option, sample_users, socket_url


async def server_metrics(url: str) -> dict[str, float]:
    """The samples of the server's /metrics, by name with labels as written there."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(url.rstrip("/") + "/metrics") as resp:
            text = await resp.text()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                samples[name] = float(value)
            except ValueError:
                pass
    return samples


async def server_rss(url: str) -> float | None:
    """The server's resident memory from its /metrics (bytes), or None."""
    return (await server_metrics(url)).get("process_resident_memory_bytes")


async def sweep_over(url: str, sockets: float, wait: float) -> dict[str, float]:
    """The server's figures of its first heartbeat sweep over at least `sockets` sockets ({} if
    it exports none, or none came within `wait` seconds)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        samples = await server_metrics(url)
        if "glint_ws_sweep_sockets" not in samples:
            return {}
        if samples["glint_ws_sweep_sockets"] >= sockets:
            return {"sweep_sockets": samples["glint_ws_sweep_sockets"],
                    "sweep_cpu_seconds": samples.get('glint_ws_sweep_seconds{clock="cpu"}', float("nan")),
                    "sweep_wall_seconds": samples.get('glint_ws_sweep_seconds{clock="wall"}', float("nan"))}
        await asyncio.sleep(1.0)
    return {}


async def prepare(target, options) -> dict:
    before = await server_rss(target.url)
    if before is None:
        raise ScenarioSkipped(f"{target.url}/metrics has no process_resident_memory_bytes")
    connections = int(option(options, "connections", 2000))
    users = sample_users(target, connections, key="any_users")
    if len(users) < connections:
        users = (users * (connections // len(users) + 1))[:connections]
    return {"tokens": mint_tokens(options.jwt_secret, users, options.token_ttl), "rss_before": before,
            "settle": float(option(options, "settle", 2.0)), "sweep_wait": float(option(options, "sweep_wait", 40.0))}


async def work(ctx) -> None:
    import aiohttp

    tokens = ctx.plan["tokens"]
    share = tokens[ctx.index::ctx.processes]
    sockets: list = []
    readers: list[asyncio.Task] = []
    failed = 0
    gate = asyncio.Semaphore(max(1, ctx.clients))
    ws_url = socket_url(ctx)

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
            # read from the start: a socket that does not answer the server's pings is dropped
            readers.append(asyncio.create_task(drain(ws)))

    async def drain(ws) -> None:
        async for _ in ws:  # answer pings (autoping), ignore pushes
            pass

    # sockets hold their connections for the whole round: a session without the pool's limit
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=ctx.options.timeout))
    try:
        await asyncio.gather(*(open_one(t) for t in share))
        ctx.recorder.gauges["sockets_held"] = float(sum(1 for ws in sockets if not ws.closed))
        ctx.recorder.gauges["sockets_failed"] = float(failed)
        if ctx.index == 0:
            # every worker opens its share at once; the first reads the server's memory once they have settled
            await asyncio.sleep(ctx.plan["settle"])
            rss = await server_rss(ctx.url)
            if rss is not None:
                ctx.recorder.gauges["server_rss_loaded_bytes"] = rss
            # nearly all of them: a few may have closed meanwhile, or failed in other workers
            ctx.recorder.gauges.update(await sweep_over(ctx.url, 0.9 * len(ctx.plan["tokens"]),
                                                        ctx.plan["sweep_wait"]))
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
        per_socket = samples.gauges["memory_per_socket_bytes"] = (loaded - plan["rss_before"]) / held
        samples.gauges["projected_rss_100k_bytes"] = plan["rss_before"] + per_socket * 100_000
    swept = samples.gauges.get("sweep_sockets")
    if swept and "sweep_cpu_seconds" in samples.gauges:
        samples.gauges["projected_sweep_cpu_100k_seconds"] = samples.gauges["sweep_cpu_seconds"] * 100_000 / swept
