"""One consumer process of bench/notifications.py: times the notifications consumer of the glint
tree it runs in (its working directory comes first on sys.path) until every event is handled.

    python bench/notifications_worker.py --dsn DSN --redis URL --events N [--bootstrap HOST:PORT
        --prefix P --group G]

With --bootstrap it reads the already relayed topics as one `glint consume` process does (a
KafkaConsumerRunner in its own group); without it, the outbox relay hands the events straight to
the consumer (the inline transport). It uses only what every glint tree since the consumer runtime
has (the constructors of Dispatcher, NotificationConsumer, KafkaConsumerRunner and Relay), so one
worker times an old commit and a new one alike. Prints one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

from redis.asyncio import Redis

from jobs.events import Dispatcher, InlineSender, KafkaConsumerRunner, Relay
from jobs.notifications import NotificationConsumer
from storage import db
from storage.email import TableSink
from storage.sinks import TablePushSink

HANDLED = "SELECT count(*) FROM processed_events WHERE consumer = 'notifications'"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace) -> dict:
    pool = await db.create_pool(args.dsn, min_size=4, max_size=20)
    redis = Redis.from_url(args.redis)
    try:
        consumer = NotificationConsumer(pool, redis, TablePushSink(pool), TableSink(pool))
        dispatcher = Dispatcher(pool, [consumer])
        if args.bootstrap:
            runner = KafkaConsumerRunner(consumer, dispatcher, args.bootstrap, args.prefix, args.group)
            stop = asyncio.Event()
            task = asyncio.create_task(runner.run(stop))
            try:
                await runner.ready.wait()  # the first lease round is not the consumer's throughput
                started, cpu = time.perf_counter(), cpu_seconds()
                while await pool.fetchval(HANDLED) < args.events:
                    await asyncio.sleep(0.02)
                elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
            finally:
                stop.set()
                await task
        else:
            relay = Relay(pool, InlineSender(dispatcher), batch=500)
            started, cpu = time.perf_counter(), cpu_seconds()
            await relay.drain()
            elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        handled = await pool.fetchval(HANDLED)
    finally:
        await redis.aclose()
        await pool.close()
    return {"handled": handled, "seconds": round(elapsed, 3), "events_per_second": round(handled / elapsed, 1),
            "cpu_seconds": round(cpu, 3), "cpu_ms_per_event": round(cpu * 1000 / max(handled, 1), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--group", default="")
    args = parser.parse_args()
    import uvloop

    print(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
