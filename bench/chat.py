"""The direct-message load generator: N websocket clients in M conversations, each sending at a
fixed rate, from several worker processes, against one or two glint processes.

    python -m bench.chat                      # own stack, two `glint serve` processes, defaults
    python -m bench.chat --clients 400 --conversations 200 --rate 5 --duration 20 --idle 5000

It starts its own local stack (PostgreSQL and Valkey only) in a temporary folder, a fresh migrated
database and `glint serve --no-consumers` processes on free ports, seeds users and conversations
with SQL (argon2 logins for thousands of users would take minutes), mints access tokens with the
servers' JWT secret, and then measures:

- messages/s sustained (acknowledged sends) and deliveries/s (message.new frames received);
- send -> receive latency p50/p99/p999 (the send time travels in the text; one machine, one clock)
  and send -> ack;
- CPU per 1,000 messages: of the glint processes, and of the whole machine (PostgreSQL, Valkey and
  the load generator included);
- with `--servers 2` (the default) each conversation's members alternate between the two
  processes, so every delivery crosses processes through Redis; `--servers 1` for the comparison;
- idle sockets one process holds (`--idle K` sockets opened after the message run) and the server's
  resident memory per socket.

The loops are bounded by `--duration`; every target is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the stack and the servers

def start_stack(root: Path) -> dict[str, str]:
    import devstack

    return devstack.up(root, services=("postgres", "redis"), fast=True, log=lambda *a: None)


async def make_database(env: dict[str, str]) -> str:
    import asyncpg

    from storage import db

    base = env["GLINT_DATABASE_URL"].rsplit("/", 1)[0]
    conn = await asyncpg.connect(base + "/postgres")
    await conn.execute("DROP DATABASE IF EXISTS glint_chat_bench WITH (FORCE)")
    await conn.execute("CREATE DATABASE glint_chat_bench")
    await conn.close()
    conn = await asyncpg.connect(base + "/glint_chat_bench")
    await db.migrate(conn)
    await conn.close()
    return base + "/glint_chat_bench"


def spawn_server(env: dict[str, str], database_url: str, port: int, extra: dict[str, str]) -> subprocess.Popen:
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    server_env.update({k: v for k, v in env.items() if k.startswith("GLINT_")})
    server_env.update(GLINT_DATABASE_URL=database_url, GLINT_EVENTS_TRANSPORT="inline", GLINT_ACCESS_LOG="false",
                      GLINT_JOBS_ENABLED="false", GLINT_LOG_LEVEL="WARNING", GLINT_STACK_DIR="/nonexistent",
                      GLINT_RATE_LIMIT_PER_HOUR=str(10**9), GLINT_DATABASE_POOL_MAX="10", **extra)
    return subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--no-consumers", "--port", str(port)],
                            cwd=ROOT, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_up(url: str, timeout: float = 30, interval: float = 0.1, alive=None) -> None:
    """Until the server at url answers /healthz; `alive()` false (its process exited) stops at once."""
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if alive is not None and not alive():
                raise SystemExit(f"the server for {url} exited")
            try:
                async with session.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not start")
            await asyncio.sleep(interval)


async def seed(database_url: str, clients: int, conversations: int, prefix: str = "chat") -> list[tuple[int, int]]:
    """Users and conversations by SQL; (user id, conversation id) per client."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        users = [r["id"] for r in await conn.fetch(
            "INSERT INTO users (username, email, password_hash) SELECT $2 || g, $2 || g || '@bench.local', 'x'"
            " FROM generate_series(1, $1) g RETURNING id", clients, prefix)]
        from bench.scenarios import open_seeded_sessions

        await open_seeded_sessions(conn, users)
        plan = []
        per = max(clients // conversations, 2)
        for start in range(0, clients, per):
            members = users[start:start + per]
            if len(members) < 2:
                break
            if len(members) == 2:
                low, high = sorted(members)
                cid = await conn.fetchval("INSERT INTO conversations (kind, pair_key, created_by)"
                                          " VALUES ('direct', $1, $2) RETURNING id", f"{low}:{high}", low)
            else:
                cid = await conn.fetchval("INSERT INTO conversations (kind, title, created_by)"
                                          " VALUES ('group', 'bench', $1) RETURNING id", members[0])
            await conn.execute("INSERT INTO conversation_members (conversation_id, user_id)"
                               " SELECT $1, unnest($2::bigint[])", cid, members)
            plan.extend((uid, cid) for uid in members)
        return plan
    finally:
        await conn.close()


def tokens_for(secret: str, user_ids: list[int]) -> list[str]:
    from handlers.auth import make_access_token

    return [make_access_token(secret, uid, uid, 3600) for uid in user_ids]


# ---------------------------------------------------------------- the workers

def worker(clients: list[tuple[int, int, str, str]], rate: float, duration: float, ready, start, results) -> None:
    """One load process: connect its clients, wait for the common start, send and receive."""
    import uvloop

    results.put(uvloop.run(_work(clients, rate, duration, ready, start)))


async def _work(clients, rate, duration, ready, start) -> dict:
    import aiohttp

    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    acks: list[float] = []
    counts = {"sent": 0, "acked": 0, "received": 0, "errors": 0}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = []
        for uid, cid, token, url in clients:
            ws = await session.ws_connect(f"{url}/ws?token={token}", autoping=True, max_msg_size=0)
            await ws.receive()  # hello
            sockets.append((uid, cid, ws))
        ready.set()
        await loop.run_in_executor(None, start.wait)
        t_end = loop.time() + duration
        sent_at: dict[str, float] = {}

        async def sender(uid: int, cid: int, ws) -> None:
            period = 1.0 / rate
            await asyncio.sleep(random.random() * period)
            n = 0
            next_at = loop.time()
            while loop.time() < t_end:
                n += 1
                ref = f"{uid}-{n}"
                sent_at[ref] = time.perf_counter()
                await ws.send_str(json.dumps({"type": "message.send", "ref": ref, "conversation_id": str(cid),
                                              "client_id": ref, "text": repr(time.time())}))
                counts["sent"] += 1
                next_at += period
                await asyncio.sleep(max(next_at - loop.time(), 0))

        async def receiver(uid: int, ws) -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                now = time.time()
                frame = json.loads(msg.data)
                kind = frame["type"]
                if kind == "message.new" and frame["message"]["sender_id"] != str(uid):
                    counts["received"] += 1
                    latencies.append(now - float(frame["message"]["text"]))
                elif kind == "message.ack":
                    counts["acked"] += 1
                    started = sent_at.pop(frame["ref"], None)
                    if started is not None:
                        acks.append(time.perf_counter() - started)
                elif kind == "error":
                    counts["errors"] += 1

        receivers = [asyncio.create_task(receiver(uid, ws)) for uid, _, ws in sockets]
        await asyncio.gather(*(sender(uid, cid, ws) for uid, cid, ws in sockets))
        await asyncio.sleep(2.0)  # the last deliveries
        for _, _, ws in sockets:
            await ws.close()
        for task in receivers:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)
    return {"latencies": latencies, "acks": acks, **counts}


def idle_worker(url: str, tokens: list[str], ready, release, results) -> None:
    import uvloop

    async def hold() -> None:
        import aiohttp

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            held, failed = [], 0
            for chunk in range(0, len(tokens), 200):
                outcome = await asyncio.gather(*(session.ws_connect(f"{url}/ws?token={t}", heartbeat=None)
                                                 for t in tokens[chunk:chunk + 200]), return_exceptions=True)
                for ws in outcome:
                    if isinstance(ws, Exception):
                        failed += 1
                    else:
                        held.append(ws)
                        await ws.receive()
            results.put({"held": len(held), "failed": failed})
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait)
            for ws in held:
                await ws.close()

    uvloop.run(hold())


# ---------------------------------------------------------------- `glint bench messages` (the scenario interface)


async def prepare(target, options) -> dict:
    """In the parent: seats (conversation, member, token) from the seed manifest; `--set rate=5`."""
    from bench.runner import ScenarioSkipped
    from bench.scenarios import mint_tokens, option, require_routes

    await require_routes(target.url, "GET /ws", "POST /api/conversations/{id}/messages/")
    conversations = target.manifest.get("conversations") or []
    if not conversations:
        raise ScenarioSkipped("the seed manifest has no conversations")
    seats = [(str(cid), member) for cid, members in conversations for member in members[:2]][: options.concurrency]
    tokens = mint_tokens(options.jwt_secret, [m for _, m in seats], options.token_ttl)
    return {"seats": [(cid, str(m), t) for (cid, m), t in zip(seats, tokens)],
            "rate": float(option(options, "rate", 5.0))}


async def work(ctx) -> None:
    """In each worker: every client holds a socket and sends at the plan's rate; `message` is send
    -> message.ack, the value `send_to_receive` is send -> message.new at another member."""
    from bench.scenarios import open_socket

    seats, period = ctx.plan["seats"], 1.0 / ctx.plan["rate"]
    ws_url = ctx.url.replace("http", "ws", 1) + "/ws"

    async def client(number: int) -> None:
        cid, uid, token = seats[number % len(seats)]
        ws = await open_socket(ctx, ws_url, token)
        if ws is None:
            return
        sent: dict[str, float] = {}

        async def reader() -> None:
            async for msg in ws:
                frame = json.loads(msg.data)
                if frame["type"] == "message.ack" and frame["ref"] in sent:
                    ctx.record("message", time.perf_counter() - sent.pop(frame["ref"]))
                elif frame["type"] == "message.new" and frame["message"]["sender_id"] != uid:
                    ctx.value("send_to_receive", time.time() - float(frame["message"]["text"]))
                elif frame["type"] == "error":
                    ctx.record("message", 0.0, frame["code"])

        task = asyncio.create_task(reader())
        n = 0
        try:
            while ctx.running:
                n += 1
                ref = f"{number}-{os.getpid()}-{n}-{random.random()}"
                sent[ref] = time.perf_counter()
                await ws.send_str(json.dumps({"type": "message.send", "ref": ref, "conversation_id": cid,
                                              "client_id": ref[:64], "text": repr(time.time())}))
                await asyncio.sleep(period)
        finally:
            await ws.close()
            task.cancel()

    await ctx.each_client(client)


# ---------------------------------------------------------------- the run

def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(len(values) * p / 100 + 0.5) - 1))]


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def machine_cpu() -> float:
    import psutil

    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)


def rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def run(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="glint-chat-bench-"))
    servers: list[subprocess.Popen] = []
    try:
        env = start_stack(root)
        database_url = asyncio.run(make_database(env))
        import devstack

        ports = [devstack.free_port() for _ in range(args.servers)]
        extra = {"GLINT_WS_SEND_QUEUE": str(args.send_queue)}
        servers = [spawn_server(env, database_url, port, extra) for port in ports]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            asyncio.run(wait_up(url))
        plan = asyncio.run(seed(database_url, args.clients, args.conversations))
        tokens = tokens_for(env["GLINT_JWT_SECRET"], [uid for uid, _ in plan])
        # members of a conversation alternate between the servers: every delivery crosses processes
        clients = [(uid, cid, token, urls[i % len(urls)]) for i, ((uid, cid), token) in enumerate(zip(plan, tokens))]
        ctx = mp.get_context("spawn")
        ready = [ctx.Event() for _ in range(args.workers)]
        start, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=worker, args=(clients[w::args.workers], args.rate, args.duration, ready[w],
                                                  start, results)) for w in range(args.workers)]
        for p in procs:
            p.start()
        for event in ready:
            if not event.wait(120):
                raise SystemExit("load workers did not connect")
        server_pids = [s.pid for s in servers]
        cpu0, machine0, t0 = cpu_seconds(server_pids), machine_cpu(), time.perf_counter()
        start.set()
        time.sleep(args.duration)
        cpu1, machine1, t1 = cpu_seconds(server_pids), machine_cpu(), time.perf_counter()
        outcomes = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        latencies = [x for o in outcomes for x in o["latencies"]]
        acks = [x for o in outcomes for x in o["acks"]]
        acked = sum(o["acked"] for o in outcomes)
        elapsed = t1 - t0
        report = {
            "settings": {k: v for k, v in vars(args).items()},
            "messages_per_s": round(acked / elapsed, 1),
            "deliveries_per_s": round(sum(o["received"] for o in outcomes) / elapsed, 1),
            "sent": sum(o["sent"] for o in outcomes), "acked": acked,
            "received": sum(o["received"] for o in outcomes), "errors": sum(o["errors"] for o in outcomes),
            "send_to_receive_ms": {f"p{p}": round(pct(latencies, p) * 1000, 2) for p in (50, 99, 99.9)},
            "send_to_ack_ms": {f"p{p}": round(pct(acks, p) * 1000, 2) for p in (50, 99, 99.9)},
            "glint_cpu_s_per_1000_messages": round((cpu1 - cpu0) / max(acked, 1) * 1000, 3),
            "machine_cpu_s_per_1000_messages": round((machine1 - machine0) / max(acked, 1) * 1000, 3),
            "glint_cpu_percent_of_one_core": round((cpu1 - cpu0) / elapsed * 100, 1),
        }
        if args.idle:
            report.update(measure_idle(urls[0], servers[0].pid, database_url, env["GLINT_JWT_SECRET"], args.idle))
        if args.presence:
            report.update(asyncio.run(measure_presence(env["GLINT_REDIS_URL"], args.presence)))
        return report
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
        import devstack

        devstack.down(root, log=lambda *a: None)
        shutil.rmtree(root, ignore_errors=True)


def measure_idle(url: str, pid: int, database_url: str, secret: str, count: int) -> dict:
    """Open `count` idle sockets to one process; its resident memory per socket."""
    plan = asyncio.run(seed(database_url, count, max(count // 2, 1), prefix="idle"))
    tokens = tokens_for(secret, [uid for uid, _ in plan])
    time.sleep(1.0)
    before = rss(pid)
    ctx = mp.get_context("spawn")
    workers = 2
    ready = [ctx.Event() for _ in range(workers)]
    release, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=idle_worker, args=(url, tokens[w::workers], ready[w], release, results))
             for w in range(workers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for event in ready:
        event.wait(300)
    connect_seconds = time.perf_counter() - t0
    held = [results.get(timeout=60) for _ in procs]
    time.sleep(1.0)
    after = rss(pid)
    release.set()
    for p in procs:
        p.join(60)
    sockets = sum(h["held"] for h in held)
    return {"idle_sockets_held": sockets, "idle_sockets_failed": sum(h["failed"] for h in held),
            "idle_connect_per_s": round(sockets / connect_seconds, 1),
            "server_rss_before_mb": round(before / 2**20, 1), "server_rss_loaded_mb": round(after / 2**20, 1),
            "memory_per_socket_kb": round((after - before) / max(sockets, 1) / 1024, 1)}


async def measure_presence(redis_url: str, count: int) -> dict:
    """The cost of presence itself, on the stack's Valkey: connect and disconnect (one script call
    each) per connection, and one heartbeat sweep's refresh of `count` connections (pipelined, as
    the gateway does it, with the session check beside it)."""
    from redis.asyncio import Redis

    from realtime.presence import PresenceStore

    redis = Redis.from_url(redis_url)
    store = PresenceStore(redis, 60)
    try:
        t0 = time.perf_counter()
        for uid in range(1, count + 1):
            await store.connect(uid, f"bench:{uid}")
        t1 = time.perf_counter()
        async with redis.pipeline(transaction=False) as pipe:
            for uid in range(1, count + 1):
                pipe.exists(f"auth:{{{uid}}}:revoked:1", f"auth:{{{uid}}}:inactive")
                store.refresh(pipe, uid, f"bench:{uid}")
            await pipe.execute()
        t2 = time.perf_counter()
        await store.lookup(range(1, 201))
        t3 = time.perf_counter()
        for uid in range(1, count + 1):
            await store.disconnect(uid, f"bench:{uid}")
        t4 = time.perf_counter()
    finally:
        await redis.aclose()
    return {"presence_connect_us": round((t1 - t0) / count * 1e6, 1),
            "presence_sweep_us_per_socket": round((t2 - t1) / count * 1e6, 1),
            "presence_lookup_200_ms": round((t3 - t2) * 1000, 2),
            "presence_disconnect_us": round((t4 - t3) / count * 1e6, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chat", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200, help="connected clients, each sending")
    parser.add_argument("--conversations", type=int, default=100, help="conversations they are spread over")
    parser.add_argument("--rate", type=float, default=5.0, help="messages per second per client")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--servers", type=int, default=2, choices=(1, 2), help="glint processes")
    parser.add_argument("--send-queue", type=int, default=256, help="GLINT_WS_SEND_QUEUE of the servers")
    parser.add_argument("--idle", type=int, default=0, help="idle sockets to open afterwards (0: skip)")
    parser.add_argument("--presence", type=int, default=5000, help="connections for the presence cost (0: skip)")
    parser.add_argument("--out", default="", help="also write the JSON report here")
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
