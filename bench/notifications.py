"""Events per second one consumer process turns from likes into notifications.

    python -m bench.notifications [--events 20000] [--authors 200] [--fans 2000] [--transport kafka|inline]
        [--compare OLD_TREE] [--rounds N] [--out DIR]
    glint bench notifications ...   (the same)

Starts a private stack on free ports (PostgreSQL and Valkey; Tansu and SeaweedFS for --transport
kafka), and per round seeds users and writes `post_liked` events into the outbox (spread over
authors and posts, so some join existing groups and some start new ones), then times one consumer
process (bench/notifications_worker.py) until every event is handled:

- kafka (the default): the events are relayed to the broker first (not timed), then one
  KafkaConsumerRunner reads them in a group of its own and dispatches, as one `glint consume`
  process does;
- inline: the outbox relay hands batches to the Dispatcher, as `glint serve` with the inline
  transport does.

Each notification is delivered as it would be in production: a `notification.new` publish on
the recipient's channel and a push to the table sink for the recipients with a device.

`--compare OLD_TREE` times a second glint checkout (a worktree of an older commit) on the same
stack and the same events, alternating with this tree round by round; both trees' notifications
must come out the same. The result (figures per round, the medians, B/A, the machine with its
load average) is printed and written as JSON to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

import devstack
from app.clients import KafkaProducer
from bench import report, trees as bench_trees
from jobs.events import KafkaSender, Relay
from storage import db

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().with_name("notifications_worker.py")
# run the worker file with the target tree first on sys.path (its working directory)
BOOTSTRAP = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
TABLES = ("users", "outbox", "processed_events", "dead_letters", "sent_pushes", "event_offsets", "event_leases",
          "event_members")


async def seed(pool: asyncpg.Pool, events: int, authors: int, fans: int, posts_per_author: int) -> None:
    """Users (authors first, then fans), a push device for one author in ten, and the events."""
    await pool.execute(
        "INSERT INTO users (username, email, password_hash)"
        " SELECT 'b' || g, 'b' || g || '@example.com', 'x' FROM generate_series(1, $1) g", authors + fans)
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM users ORDER BY id")]
    author_ids, fan_ids = ids[:authors], ids[authors:]
    await pool.execute(
        "INSERT INTO push_devices (user_id, endpoint, platform)"
        " SELECT id, 'https://push.example/' || id, 'web' FROM unnest($1::bigint[]) id", author_ids[::10])
    # the i-th like: author i % authors, one of their posts, a fan chosen so (post, fan) never repeats
    await pool.execute(
        "INSERT INTO outbox (topic, type, key, payload)"
        " SELECT 'posts', 'post_liked', a.id::text,"
        "        jsonb_build_object('post_id', ((i % cardinality($1::bigint[])) * 1000 + (i / $4) % $3 + 1)::text, 'author_id', a.id::text,"
        "                           'user_id', ($2::bigint[])[1 + (i * 7919) % cardinality($2::bigint[])]::text)"
        " FROM generate_series(0, $5 - 1) i"
        " JOIN LATERAL (SELECT ($1::bigint[])[1 + i % cardinality($1::bigint[])] AS id) a ON true",
        author_ids, fan_ids, posts_per_author, authors, events)


async def reset(pool: asyncpg.Pool) -> None:
    """Empty what a round writes (users cascade to notifications, devices and pushes)."""
    await pool.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")


async def prepare(pool: asyncpg.Pool, args: argparse.Namespace, bootstrap: str | None) -> dict[str, str]:
    """Seed a round; with the broker, relay its events there first (not timed). The worker's arguments."""
    await reset(pool)
    await seed(pool, args.events, args.authors, args.fans, args.posts_per_author)
    if bootstrap is None:
        return {}
    run_id = uuid.uuid4().hex[:8]
    prefix = f"bench{run_id}."
    producer = KafkaProducer(bootstrap)
    try:
        await Relay(pool, KafkaSender(producer, prefix), batch=500).drain()
    finally:
        await producer.close()
    return {"--bootstrap": bootstrap, "--prefix": prefix, "--group": f"bench{run_id}-"}


def time_worker(tree: Path, env: dict[str, str], args: argparse.Namespace, extra: dict[str, str]) -> dict:
    """One consumer process of `tree` until every event is handled; its figures."""
    argv = [sys.executable, "-c", BOOTSTRAP, str(WORKER), "--dsn", env["GLINT_DATABASE_URL"],
            "--redis", env["GLINT_REDIS_URL"], "--events", str(args.events)]
    for name, value in extra.items():
        argv += [name, value]
    done = subprocess.run(argv, cwd=tree, env=bench_trees.tree_env(tree), capture_output=True, text=True,
                          timeout=args.timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the worker in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


async def outcome(pool: asyncpg.Pool) -> dict[str, int]:
    """What the round made: the same events must make the same notifications in every tree."""
    return {"notifications": await pool.fetchval("SELECT count(*) FROM notifications"),
            "items": await pool.fetchval("SELECT count(*) FROM notification_items"),
            "actors": await pool.fetchval("SELECT coalesce(sum(actor_count), 0) FROM notifications"),
            "pushes": await pool.fetchval("SELECT count(*) FROM sent_pushes")}


async def run(args: argparse.Namespace) -> dict:
    targets, rounds = bench_trees.targets(args.compare, args.rounds)
    root = Path(tempfile.mkdtemp(prefix="glint-bench-notifications-"))
    services = ["postgres", "redis"] + (["s3", "kafka"] if args.transport == "kafka" else [])
    env = devstack.up(root, ports={s: devstack.free_port() for s in services}, services=services, fast=True,
                   log=lambda *a: None)
    runs: dict[str, list[dict]] = {label: [] for label, _ in targets}
    try:
        dsn = env["GLINT_DATABASE_URL"]
        conn = await asyncpg.connect(dsn)
        await db.migrate(conn)
        await conn.close()
        pool = await db.create_pool(dsn, min_size=1, max_size=4)
        try:
            for n, label, tree in bench_trees.alternate(targets, rounds):
                extra = await prepare(pool, args, env.get("GLINT_KAFKA_BOOTSTRAP") if args.transport == "kafka"
                                      else None)
                figures = await asyncio.to_thread(time_worker, tree, env, args, extra)
                figures.update(round=n + 1, load_average=list(os.getloadavg()), **await outcome(pool))
                runs[label].append(figures)
                print(json.dumps({"target": label, **figures}), file=sys.stderr)
        finally:
            await pool.close()
    finally:
        devstack.destroy(root, log=lambda *a: None)
    return result(args, targets, runs)


def result(args: argparse.Namespace, targets: list[tuple[str, Path]], runs: dict[str, list[dict]]) -> dict:
    """Settings, machine, every round, each target's medians, and B/A."""
    out: dict = {
        "scenario": "notifications",
        "benchmark": "likes -> notifications, one consumer process",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"transport": args.transport, "events": args.events, "authors": args.authors, "fans": args.fans,
                     "posts_per_author": args.posts_per_author},
        "machine": report.machine(),
        **bench_trees.summarize(targets, runs, ("events_per_second", "seconds", "cpu_ms_per_event")),
    }
    if len(targets) == 2:
        out["same_outcome"] = all(ra[k] == rb[k] for ra, rb in zip(runs["A"], runs["B"])
                                  for k in ("notifications", "items", "actors", "pushes"))
    return report._clean(out)


def run_cli(args: argparse.Namespace) -> dict:
    figures = asyncio.run(run(args))
    text = json.dumps(figures, indent=2)
    if args.out is not None:
        path = report.write_json(figures, args.out / f"notifications-{time.strftime('%Y%m%d-%H%M%S')}.json")
        print(f"results: {path}", file=sys.stderr)
    print(text)
    return figures


def main() -> None:
    from bench.cli import notifications_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    notifications_arguments(parser)
    run_cli(parser.parse_args())


if __name__ == "__main__":
    main()
