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

Instead of open-loop clients at `--rate`:

- `--pairs K`: K closed-loop sender/receiver pairs, each pair in a 1:1 conversation of its own (with
  two servers the sender on one, the receiver on the other); a sender sends its next message as
  soon as the receiver's socket has the previous one (message.new). The same figures, and `lost`
  (messages that never arrived within LOST_AFTER seconds).
- `--group N`: one conversation of N members (their sockets alternate between the servers), one of
  them sending at `--rate`; per message, from the sender's ack and from its send to the last of the
  other members' sockets (p50/p99/max), `complete`/`incomplete` (reached every member or not), and
  the servers' CPU per 1,000 deliveries.

`--compare OLD_TREE` measures another glint checkout (a worktree of an older commit) the same way:
its own database on the same stack, migrated by its own code, its own `glint serve` processes on
the same Python, in rounds alternating with this tree's (`--rounds R`, default 3; bench/trees.py,
as `glint bench notifications --compare` does). The report then holds each tree's rounds and
medians and `comparison.a_over_b` (new over old) and `b_over_a`; a table of them goes to stderr.

    python -m bench.chat --pairs 20 --servers 1 --compare /tmp/glint-old --rounds 3 --out chat.json

The loops are bounded by `--warmup` (the same load first, not counted) and `--duration`; every
target is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the stack and the servers

def start_stack(root: Path) -> dict[str, str]:
    import devstack

    services = ("postgres", "redis")
    return devstack.up(root, ports={s: devstack.free_port() for s in services}, services=services, fast=True,
                       log=lambda *a: None)


MIGRATE = ("import asyncio, sys, asyncpg\nfrom storage import db\n"
           "async def main():\n    conn = await asyncpg.connect(sys.argv[1])\n    await db.migrate(conn)\n"
           "    await conn.close()\nasyncio.run(main())")


async def make_database(env: dict[str, str], name: str = "glint_chat_bench", tree: Path | None = None) -> str:
    """A fresh database `name`, migrated by this process's code, or by another checkout's (`tree`,
    in a child process of the same Python with that tree first on its path)."""
    import asyncpg

    from storage import db

    base = env["GLINT_DATABASE_URL"].rsplit("/", 1)[0]
    conn = await asyncpg.connect(base + "/postgres")
    await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    if tree is None:
        conn = await asyncpg.connect(base + "/" + name)
        await db.migrate(conn)
        await conn.close()
    else:
        from bench.trees import tree_env

        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", MIGRATE, base + "/" + name], cwd=tree,
                                       env=tree_env(tree), capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise SystemExit(f"migrating {name} with {tree} failed:\n{done.stderr[-3000:]}")
    return base + "/" + name


def spawn_server(env: dict[str, str], database_url: str, port: int, extra: dict[str, str],
                 tree: Path = ROOT) -> subprocess.Popen:
    from bench.trees import tree_env

    server_env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    server_env.update({k: v for k, v in env.items() if k.startswith("GLINT_")})
    server_env.update(GLINT_DATABASE_URL=database_url, GLINT_EVENTS_TRANSPORT="inline", GLINT_ACCESS_LOG="false",
                      GLINT_JOBS_ENABLED="false", GLINT_LOG_LEVEL="WARNING", GLINT_STACK_DIR="/nonexistent",
                      GLINT_RATE_LIMIT_PER_HOUR=str(10**9), GLINT_DATABASE_POOL_MAX="10", **extra)
    return subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--no-consumers", "--port", str(port)],
                            cwd=tree, env=tree_env(tree, server_env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


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

        if await conn.fetchval("SELECT to_regclass('sessions') IS NOT NULL"):  # an older tree may have none
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

LOST_AFTER = 5.0  # seconds a closed-loop pair waits for a delivery before it counts the message lost
WARM = "w"  # the client ids of messages sent during the warm-up start with it: they are not counted


def worker(mode: str, share: list, rate: float, window: tuple[float, float], nonce: str, ready, start,
           results) -> None:
    """One load process: connect its clients, wait for the common start, send and receive for the
    window's (warm-up, measured) seconds. `mode` is open (every client sends at `rate`), pairs
    (closed loops) or group (one sender)."""
    import uvloop

    outcome = uvloop.run((_pairs if mode == "pairs" else _work)(share, rate, window, nonce, ready, start))
    if mode == "open":  # per message only for the group's last member
        for key in ("sent_at", "acked_at", "arrivals"):
            outcome.pop(key, None)
    results.put(outcome)


async def connect(session, url: str, token: str):
    """A socket of a seeded user, past its hello."""
    ws = await session.ws_connect(f"{url}/ws?token={token}", autoping=True, max_msg_size=0)
    await ws.receive()  # hello
    return ws


def send_frame(cid: int, ref: str, text: str) -> str:
    """message.send with the ref as its client_id (unique per run: the server deduplicates on it)."""
    return json.dumps({"type": "message.send", "ref": ref, "conversation_id": str(cid), "client_id": ref,
                       "text": text})


def measured(ref: str) -> bool:
    return not ref.startswith(WARM)


def message_ref(uid: int, nonce: str, n: int, warm: bool) -> str:
    return f"{WARM if warm else ''}{uid}-{nonce}-{n}"


async def _work(clients, rate, window, nonce, ready, start) -> dict:
    """Open loop: each client marked to send does so at `rate` whatever comes back; each socket notes
    the messages of others that reach it, and per message how many members it reached here and
    when the last of them did. Times are CLOCK_MONOTONIC, which every process of the machine shares
    (the send time travels in the text), so the parent can take the last member over the workers."""
    import aiohttp

    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    sent_times: list[float] = []  # the send time of each latency's message, for the per-second spread
    acks: list[float] = []
    counts = {"sent": 0, "acked": 0, "received": 0, "errors": 0}
    sent_at: dict[str, float] = {}
    acked_at: dict[str, float] = {}
    arrivals: dict[str, list] = {}  # ref -> [members it reached here, the latest of them]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = [(uid, cid, sends, await connect(session, url, token)) for uid, cid, token, url, sends in clients]
        ready.set()
        await loop.run_in_executor(None, start.wait)
        t_begin = loop.time() + window[0]
        t_end = t_begin + window[1]

        async def sender(uid: int, cid: int, ws) -> None:
            period = 1.0 / rate
            await asyncio.sleep(random.random() * period)
            n = 0
            next_at = loop.time()
            while loop.time() < t_end:
                n += 1
                ref = message_ref(uid, nonce, n, loop.time() < t_begin)
                if measured(ref):
                    sent_at[ref] = time.monotonic()
                    counts["sent"] += 1
                await ws.send_str(send_frame(cid, ref, repr(time.monotonic())))
                next_at += period
                await asyncio.sleep(max(next_at - loop.time(), 0))

        async def receiver(uid: int, ws) -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                now = time.monotonic()
                frame = json.loads(msg.data)
                kind = frame["type"]
                if kind == "message.new" and frame["message"]["sender_id"] != str(uid):
                    if not measured(frame["message"]["client_id"]):
                        continue
                    counts["received"] += 1
                    sent = float(frame["message"]["text"])
                    latencies.append(now - sent)
                    sent_times.append(sent)
                    seen = arrivals.setdefault(frame["message"]["client_id"], [0, now])
                    seen[0] += 1
                    seen[1] = max(seen[1], now)
                elif kind == "message.ack" and measured(frame["ref"]):
                    counts["acked"] += 1
                    started = sent_at.get(frame["ref"])
                    if started is not None:
                        acked_at[frame["ref"]] = now
                        acks.append(now - started)
                elif kind == "error":
                    counts["errors"] += 1

        receivers = [asyncio.create_task(receiver(uid, ws)) for uid, _, _, ws in sockets]
        await asyncio.gather(*(sender(uid, cid, ws) for uid, cid, sends, ws in sockets if sends))
        await asyncio.sleep(2.0 + max(t_end - loop.time(), 0))  # the last deliveries
        await _close([ws for _, _, _, ws in sockets], receivers)
    return {"latencies": latencies, "sent_times": sent_times, "acks": acks, "sent_at": sent_at, "acked_at": acked_at,
            "arrivals": arrivals, **counts}


async def _close(sockets: list, tasks: list) -> None:
    for ws in sockets:
        await ws.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _pairs(pairs, rate, window, nonce, ready, start) -> dict:
    """Closed loops: each pair's sender sends its next message as soon as the receiver's socket has
    the previous one (message.new); one that does not arrive in LOST_AFTER s counts as lost."""
    import aiohttp

    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    sent_times: list[float] = []
    acks: list[float] = []
    counts = {"sent": 0, "acked": 0, "received": 0, "errors": 0, "lost": 0}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = [((s_uid, cid, await connect(session, s_url, s_token)), await connect(session, r_url, r_token))
                   for (s_uid, cid, s_token, s_url), (_, _, r_token, r_url) in pairs]
        ready.set()
        await loop.run_in_executor(None, start.wait)
        t_begin = loop.time() + window[0]
        t_end = t_begin + window[1]

        async def pair(uid: int, cid: int, sender_ws, receiver_ws) -> None:
            current = {"ref": "", "sent": 0.0}
            arrived = asyncio.Event()

            async def receive() -> None:
                async for msg in receiver_ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    frame = json.loads(msg.data)
                    if frame["type"] == "message.new" and frame["message"]["client_id"] == current["ref"]:
                        if measured(current["ref"]):
                            latencies.append(time.monotonic() - current["sent"])
                            sent_times.append(current["sent"])
                            counts["received"] += 1
                        arrived.set()

            async def acknowledge() -> None:
                async for msg in sender_ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    frame = json.loads(msg.data)
                    if frame["type"] == "message.ack" and measured(frame["ref"]):
                        counts["acked"] += 1
                        if frame["ref"] == current["ref"]:
                            acks.append(time.monotonic() - current["sent"])
                    elif frame["type"] == "error":
                        counts["errors"] += 1
                        if frame.get("ref") == current["ref"]:
                            arrived.set()  # it will not come: send the next one

            tasks = [asyncio.create_task(receive()), asyncio.create_task(acknowledge())]
            n = 0
            while loop.time() < t_end:
                n += 1
                arrived.clear()
                current.update(ref=message_ref(uid, nonce, n, loop.time() < t_begin), sent=time.monotonic())
                await sender_ws.send_str(send_frame(cid, current["ref"], repr(time.monotonic())))
                counts["sent"] += measured(current["ref"])
                try:
                    await asyncio.wait_for(arrived.wait(), LOST_AFTER)
                except TimeoutError:
                    counts["lost"] += measured(current["ref"])
            await asyncio.sleep(0.5)  # the last acknowledgements
            await _close([sender_ws, receiver_ws], tasks)

        await asyncio.gather(*(pair(uid, cid, s_ws, r_ws) for (uid, cid, s_ws), r_ws in sockets))
    return {"latencies": latencies, "sent_times": sent_times, "acks": acks, **counts}


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
    """In the parent: seats (token, conversation, member) from the seed manifest; `--set rate=5`."""
    from bench.runner import ScenarioSkipped
    from bench.scenarios import mint_tokens, option, require_routes

    await require_routes(target.url, "GET /ws", "POST /api/conversations/{id}/messages/")
    conversations = target.manifest.get("conversations") or []
    if not conversations:
        raise ScenarioSkipped("the seed manifest has no conversations")
    seats = [(str(cid), member) for cid, members in conversations for member in members[:2]][: options.concurrency]
    tokens = mint_tokens(options.jwt_secret, [m for _, m in seats], options.token_ttl)
    return {"seats": [(t, cid, str(m)) for (cid, m), t in zip(seats, tokens)],
            "rate": float(option(options, "rate", 5.0))}


async def work(ctx) -> None:
    """In each worker: every client holds a socket and sends at the plan's rate; `message` is send
    -> message.ack, the value `send_to_receive` is send -> message.new at another member."""
    from bench.scenarios import seated_sockets

    period = 1.0 / ctx.plan["rate"]

    async def client(number: int, seat: tuple[str, str, str], ws) -> None:
        _, cid, uid = seat
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
            task.cancel()

    await seated_sockets(ctx, client)


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


def settings(args: argparse.Namespace) -> dict:
    """Every option of the run (under `glint bench chat` the namespace also holds the CLI's own)."""
    return {k: v for k, v in vars(args).items() if k not in ("command", "bench_command", "func")}


def mode_of(args: argparse.Namespace) -> str:
    return "pairs" if args.pairs else "group" if args.group else "open"


def population(args: argparse.Namespace) -> tuple[int, int]:
    """(users, conversations) the seed makes: K 1:1 conversations for --pairs K, one of N for --group N."""
    if args.pairs:
        return 2 * args.pairs, args.pairs
    if args.group:
        return args.group, 1
    return args.clients, args.conversations


def shares(args: argparse.Namespace, clients: list[tuple]) -> list[list]:
    """What each load process drives: its clients, its pairs (sender, receiver), or its group members
    (the first one sends)."""
    workers = args.workers
    if args.pairs:
        pairs = list(zip(clients[0::2], clients[1::2]))
        return [pairs[w::workers] for w in range(workers)]
    if args.group:
        members = [(*client, i == 0) for i, client in enumerate(clients)]
        return [members[w::workers] for w in range(workers)]
    senders = [(*client, True) for client in clients]
    return [senders[w::workers] for w in range(workers)]


def drive(args: argparse.Namespace, server_pids: list[int], work: list[list]) -> tuple[list[dict], dict]:
    """Start a load process per share, let them go together, and time the measured seconds: the
    workers' outcomes, and the elapsed seconds with the CPU the servers and the machine used."""
    ctx = mp.get_context("spawn")
    ready = [ctx.Event() for _ in work]
    start, results = ctx.Event(), ctx.Queue()
    nonce = os.urandom(4).hex()  # client ids never repeat over rounds on the same database
    procs = [ctx.Process(target=worker, args=(mode_of(args), share, args.rate, (args.warmup, args.duration), nonce,
                                              ready[w], start, results)) for w, share in enumerate(work)]
    for p in procs:
        p.start()
    for event in ready:
        if not event.wait(120):
            raise SystemExit("load workers did not connect")
    start.set()
    time.sleep(args.warmup)  # the same load, not measured: the fresh servers' pools and caches fill
    cpu0, machine0, t0 = cpu_seconds(server_pids), machine_cpu(), time.perf_counter()
    time.sleep(args.duration)
    cpu1, machine1, t1 = cpu_seconds(server_pids), machine_cpu(), time.perf_counter()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    return outcomes, {"elapsed": t1 - t0, "glint_cpu": cpu1 - cpu0, "machine_cpu": machine1 - machine0}


def ms(values: list[float], *ps: float) -> dict[str, float]:
    return {f"p{p}": round(pct(values, p) * 1000, 2) for p in ps}


def figures(args: argparse.Namespace, outcomes: list[dict], used: dict) -> dict:
    """The report of one measured run: throughput, latencies, CPU per 1,000 messages."""
    total = {k: sum(o.get(k, 0) for o in outcomes) for k in ("sent", "acked", "received", "errors", "lost")}
    latencies = [x for o in outcomes for x in o["latencies"]]
    acks = [x for o in outcomes for x in o["acks"]]
    acked, elapsed = total["acked"], used["elapsed"]
    out: dict = {}
    if args.pairs:
        out.update(mode="pairs", pairs=args.pairs, servers=args.servers)
    elif args.group:
        out.update(mode="group", members=args.group, servers=args.servers, rate=args.rate)
    out.update({
        "messages_per_s": round(acked / elapsed, 1),
        "deliveries_per_s": round(total["received"] / elapsed, 1),
        "sent": total["sent"], "acked": acked, "received": total["received"], "errors": total["errors"],
    })
    if args.pairs:
        out["lost"] = total["lost"]
    out.update({
        "send_to_receive_ms": ms(latencies, 50, 99, 99.9),
        "send_to_ack_ms": ms(acks, 50, 99, 99.9),
        "send_to_receive_by_second": by_second(outcomes),
    })
    if args.group:
        out.update(fan_out(args.group, outcomes))
    out.update({
        "glint_cpu_s_per_1000_messages": round(used["glint_cpu"] / max(acked, 1) * 1000, 3),
        "machine_cpu_s_per_1000_messages": round(used["machine_cpu"] / max(acked, 1) * 1000, 3),
        "glint_cpu_percent_of_one_core": round(used["glint_cpu"] / elapsed * 100, 1),
    })
    if args.group:  # a message is members - 1 deliveries: what the fan-out costs
        out["glint_cpu_s_per_1000_deliveries"] = round(used["glint_cpu"] / max(total["received"], 1) * 1000, 3)
    return out


def by_second(outcomes: list[dict]) -> list[dict]:
    """send -> receive per second of the measured window (by send time): whether a tail is a
    backlog that builds, a stall at one moment, or spread over the run."""
    timed = [(at, x) for o in outcomes for at, x in zip(o.get("sent_times", ()), o["latencies"])]
    if not timed:
        return []
    first = min(at for at, _ in timed)
    seconds: dict[int, list[float]] = {}
    for at, x in timed:
        seconds.setdefault(int(at - first), []).append(x)
    return [{"second": s, "n": len(xs), **ms(xs, 50, 99), "max": round(max(xs) * 1000, 2)}
            for s, xs in sorted(seconds.items())]


def fan_out(members: int, outcomes: list[dict]) -> dict:
    """Per message of the group: from the sender's ack, and from its send, to the last of the other
    members' sockets; a message some member never got is counted incomplete."""
    sent_at = {ref: t for o in outcomes for ref, t in o["sent_at"].items()}
    acked_at = {ref: t for o in outcomes for ref, t in o["acked_at"].items()}
    reached: dict[str, list] = {}
    for o in outcomes:
        for ref, (count, last) in o["arrivals"].items():
            seen = reached.setdefault(ref, [0, last])
            seen[0] += count
            seen[1] = max(seen[1], last)
    complete = [ref for ref in sent_at if reached.get(ref, (0,))[0] >= members - 1]
    ack_to_last = [reached[ref][1] - acked_at[ref] for ref in complete if ref in acked_at]
    send_to_last = [reached[ref][1] - sent_at[ref] for ref in complete]

    def spread(values: list[float]) -> dict[str, float]:
        return {**ms(values, 50, 99), "max": round(max(values) * 1000, 2) if values else float("nan")}

    return {"complete": len(complete), "incomplete": len(sent_at) - len(complete),
            "ack_to_last_member_ms": spread(ack_to_last), "send_to_last_member_ms": spread(send_to_last)}


def start_servers(args: argparse.Namespace, env: dict[str, str], tree: Path,
                  database_url: str) -> tuple[list[subprocess.Popen], list[str]]:
    """`--servers` glint processes of `tree` on free ports, answering."""
    import devstack

    ports = [devstack.free_port() for _ in range(args.servers)]
    extra = {"GLINT_WS_SEND_QUEUE": str(args.send_queue)}
    servers = [spawn_server(env, database_url, port, extra, tree) for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    for url, server in zip(urls, servers):
        asyncio.run(wait_up(url, alive=lambda server=server: server.poll() is None))
    return servers, urls


def stop_servers(servers: list[subprocess.Popen]) -> None:
    for server in servers:
        server.terminate()
    for server in servers:
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def measure(args: argparse.Namespace, env: dict[str, str], tree: Path, database_url: str, plan: list,
            tokens: list[str], idle_prefix: str) -> dict:
    """One measured run against servers of `tree` (started for it, stopped after it)."""
    servers, urls = start_servers(args, env, tree, database_url)
    try:
        # members of a conversation alternate between the servers: every delivery crosses processes
        clients = [(uid, cid, token, urls[i % len(urls)]) for i, ((uid, cid), token) in enumerate(zip(plan, tokens))]
        outcomes, used = drive(args, [s.pid for s in servers], shares(args, clients))
        report = figures(args, outcomes, used)
        if args.idle:
            report.update(measure_idle(urls[0], servers[0].pid, database_url, env["GLINT_JWT_SECRET"], args.idle,
                                       idle_prefix))
        return report
    finally:
        stop_servers(servers)


COMPARED = ("messages_per_s", "deliveries_per_s", "send_to_receive_ms.p50", "send_to_receive_ms.p99",
            "send_to_ack_ms.p50", "send_to_ack_ms.p99", "glint_cpu_s_per_1000_messages",
            "machine_cpu_s_per_1000_messages", "glint_cpu_percent_of_one_core")
COMPARED_GROUP = ("glint_cpu_s_per_1000_deliveries", "ack_to_last_member_ms.p50", "ack_to_last_member_ms.p99", "ack_to_last_member_ms.max",
                  "send_to_last_member_ms.p50", "send_to_last_member_ms.p99", "incomplete")
COMPARED_IDLE = ("memory_per_socket_kb",)


def run(args: argparse.Namespace) -> dict:
    """The stack, a database per tree, then every round; one tree and one round report as a flat
    dict, more as each tree's rounds and medians (and new/old with --compare)."""
    from bench import trees as bench_trees

    trees, rounds = bench_trees.targets(args.compare, args.rounds)
    root = Path(tempfile.mkdtemp(prefix="glint-chat-bench-"))
    try:
        env = start_stack(root)
        seats = {}
        for label, tree in trees:
            name, own = ("glint_chat_bench", None) if label == "A" else ("glint_chat_bench_b", tree)
            database_url = asyncio.run(make_database(env, name, own))
            plan = asyncio.run(seed(database_url, *population(args)))
            seats[label] = (tree, database_url, plan, tokens_for(env["GLINT_JWT_SECRET"], [uid for uid, _ in plan]))
        runs: dict[str, list[dict]] = {label: [] for label, _ in trees}
        for n, label, _ in bench_trees.alternate(trees, rounds):
            tree, database_url, plan, tokens = seats[label]
            report = measure(args, env, tree, database_url, plan, tokens, f"idle{n}_" if rounds > 1 else "idle")
            if len(trees) > 1 or rounds > 1:
                report.update(round=n + 1, load_average=list(os.getloadavg()))
                print(json.dumps({"target": label, **report}), file=sys.stderr)
            runs[label].append(report)
        presence = asyncio.run(measure_presence(env["GLINT_REDIS_URL"], args.presence)) if args.presence else {}
    finally:
        import devstack

        devstack.destroy(root, log=lambda *a: None)
    if len(trees) == 1 and rounds == 1:
        return {"settings": settings(args), **runs["A"][0], **presence}
    return compared(args, trees, runs, presence)


def compared(args: argparse.Namespace, trees: list[tuple[str, Path]], runs: dict[str, list[dict]],
             presence: dict) -> dict:
    """Settings, machine, each tree's rounds and medians, new/old (A/B) and old/new; presence's cost."""
    from bench import report, trees as bench_trees

    keys = COMPARED + (COMPARED_GROUP if args.group else ()) + (COMPARED_IDLE if args.idle else ())
    out = {"scenario": "chat", "mode": mode_of(args), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "settings": settings(args), "machine": report.machine(),
           **bench_trees.summarize(trees, runs, keys), **presence}
    return report._clean(out)


def table(result: dict) -> str:
    """The medians of each tree side by side, with new/old where there are two."""
    if "targets" not in result:
        return ""
    targets = result["targets"]
    ratio = result.get("comparison", {}).get("a_over_b", {})
    head = ["figure"] + [f"{t['label']} {((t.get('git') or {}).get('commit') or '')[:8]}".strip() for t in targets]
    rows = [head + (["A/B (new/old)"] if ratio else [])]
    for key in targets[0]["median"]:
        row = [key] + [_fmt(t["median"].get(key)) for t in targets]
        rows.append(row + ([_fmt(ratio.get(key), 3)] if ratio else []))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def measure_idle(url: str, pid: int, database_url: str, secret: str, count: int, prefix: str = "idle") -> dict:
    """Open `count` idle sockets to one process; its resident memory per socket."""
    plan = asyncio.run(seed(database_url, count, max(count // 2, 1), prefix=prefix))
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


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of `python -m bench.chat` (the same as `glint bench chat`)."""
    from bench.cli import chat_arguments

    parser = argparse.ArgumentParser(prog="python -m bench.chat", description=__doc__.splitlines()[0])
    chat_arguments(parser)
    return parser.parse_args(argv)


def run_cli(args: argparse.Namespace) -> dict:
    """Run, print the JSON report (and with two trees or rounds a table of the medians on stderr),
    write it to --out."""
    if args.group == 1 or args.group > 256 or args.pairs < 0:
        sys.exit("bench.chat: --group takes 2 to 256 members (a group's limit), --pairs a positive count")
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if "targets" in report:
        print(table(report), file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text)
    return report


def main(argv: list[str] | None = None) -> None:
    run_cli(arguments(argv))


if __name__ == "__main__":
    main()
