"""Events per second one consumer process turns from likes into notifications.

    python -m bench.notifications [--events 20000] [--authors 200] [--fans 2000] [--transport inline|kafka]

Starts a private stack on free ports (PostgreSQL and Valkey; Tansu and SeaweedFS for --transport
kafka), seeds users, writes `post_liked` events into the outbox (spread over authors and posts, so
some join existing groups and some start new ones), then times one process's consumer path until
every event is handled:

- inline: the outbox relay hands batches to the Dispatcher (dedupe by event id, the consumer,
  the processed mark), as `glint serve` with the inline transport does;
- kafka: the events are relayed to the broker first (not timed), then one KafkaConsumerRunner
  reads them in its group and dispatches, as one `glint consume` process does.

Each notification is delivered as it would be in production: a `notification.new` publish on
the recipient's channel and a push to the table sink for the recipients with a device. It prints
one line of JSON with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

import devstack
from app.clients import KafkaProducer
from jobs.events import Dispatcher, InlineSender, KafkaConsumerRunner, KafkaSender, Relay
from jobs.notifications import NotificationConsumer
from storage import db
from storage.email import TableSink
from storage.sinks import TablePushSink


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


async def run(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="glint-bench-notifications-"))
    services = ["postgres", "redis"] + (["s3", "kafka"] if args.transport == "kafka" else [])
    env = devstack.up(root, ports={s: devstack.free_port() for s in services}, services=services, fast=True,
                      log=lambda *a: None)
    try:
        dsn = env["GLINT_DATABASE_URL"]
        conn = await asyncpg.connect(dsn)
        await db.migrate(conn)
        await conn.close()
        pool = await db.create_pool(dsn, min_size=4, max_size=20)
        redis = Redis.from_url(env["GLINT_REDIS_URL"])
        try:
            await seed(pool, args.events, args.authors, args.fans, args.posts_per_author)
            consumer = NotificationConsumer(pool, redis, TablePushSink(pool), TableSink(pool))
            dispatcher = Dispatcher(pool, [consumer])
            if args.transport == "inline":
                relay = Relay(pool, InlineSender(dispatcher), batch=500)
                started = time.perf_counter()
                await relay.drain()
                elapsed = time.perf_counter() - started
            else:
                elapsed = await run_kafka(pool, dispatcher, consumer, env["GLINT_KAFKA_BOOTSTRAP"], args.events)
            handled = await pool.fetchval("SELECT count(*) FROM processed_events WHERE consumer = 'notifications'")
            figures = {
                "benchmark": "likes -> notifications, one consumer process",
                "transport": args.transport, "events": args.events, "handled": handled,
                "seconds": round(elapsed, 2), "events_per_second": round(handled / elapsed, 1),
                "notifications": await pool.fetchval("SELECT count(*) FROM notifications"),
                "items": await pool.fetchval("SELECT count(*) FROM notification_items"),
                "pushes": await pool.fetchval("SELECT count(*) FROM sent_pushes"),
            }
        finally:
            await redis.aclose()
            await pool.close()
    finally:
        devstack.down(root, log=lambda *a: None)
        shutil.rmtree(root, ignore_errors=True)
    return figures


async def run_kafka(pool: asyncpg.Pool, dispatcher: Dispatcher, consumer: NotificationConsumer, bootstrap: str,
                    events: int) -> float:
    """Relay everything to the broker, then time one runner consuming it all."""
    run_id = uuid.uuid4().hex[:8]
    prefix, group = f"bench{run_id}.", f"bench{run_id}-"
    producer = KafkaProducer(bootstrap)
    try:
        await Relay(pool, KafkaSender(producer, prefix), batch=500).drain()
    finally:
        await producer.close()
    runner = KafkaConsumerRunner(consumer, dispatcher, bootstrap, prefix, group)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await runner.ready.wait()  # the group join is not the consumer's throughput
        started = time.perf_counter()
        while await pool.fetchval("SELECT count(*) FROM processed_events WHERE consumer = 'notifications'") < events:
            await asyncio.sleep(0.05)
        return time.perf_counter() - started
    finally:
        stop.set()
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--authors", type=int, default=200)
    parser.add_argument("--fans", type=int, default=2_000)
    parser.add_argument("--posts-per-author", type=int, default=5)
    parser.add_argument("--transport", choices=("inline", "kafka"), default="inline")
    args = parser.parse_args()
    import uvloop

    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
