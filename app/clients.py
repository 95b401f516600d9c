"""Cleanup contexts for every client the process holds.

Each is an async generator: start-up before the yield, clean-up after, and clean-up runs if and
only if start-up did. create_app() chains them in order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from typing import AsyncIterator

import hiredis
from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from app.config import Config
from handlers.admin import Enforcement
from handlers.auth import check_session
from handlers.context import config_key, email_sink_key, enforcement_key, limiter_key, pool_key, redis_key, s3_key
from handlers.context import timelines_key
from handlers.context import links_key, presigner_key, replicas_key, search_key, secret_box_key, tray_cache_key
from handlers.socket import handle_frame
from handlers.two_factor import secret_box
from realtime.delivery import MessageWriter, ReceiptWriter, on_delivered, receipts_key, writer_key
from realtime.gateway import Gateway, gateway_ctx, gateway_key
from storage import db, email, media, stories, timelines as tl
from storage.ratelimit import RateLimiter
from storage.replicas import Replicas
from storage.timelines import Timelines

log = logging.getLogger("glint.clients")


async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    """The asyncpg pool, and the e-mail sink (the table sink writes through it)."""
    config = app[config_key]
    pool = await db.create_pool(config.database.url, min_size=config.database.pool_min,
                                max_size=config.database.pool_max)
    app[pool_key] = pool
    app[email_sink_key] = email_sink(config, pool)
    async with pool.acquire() as conn:  # the home feed's celebrity merge reads the list from this threshold up
        await tl.keep_celebrities(conn, config.feed.celebrity_threshold)
    yield
    await pool.close()


def email_sink(config: Config, pool) -> email.EmailSink:
    """SMTP when configured, otherwise the sent_emails table on this pool."""
    smtp = None
    if config.email.host:
        smtp = email.SmtpSettings(config.email.host, config.email.port, config.email.username, config.email.password,
                                  config.email.starttls, config.email.sender)
    return email.make_sink(pool, smtp)


def redis_cluster_url(config: Config) -> str | None:
    """The URL of a node of the configured Redis Cluster (as redis-py reads it), or None for one node."""
    scheme, sep, rest = config.redis.url.partition("://")
    if scheme.endswith("+cluster"):
        return f"{scheme.removesuffix('+cluster')}{sep}{rest}"
    return config.redis.url if config.redis.cluster else None


def open_redis(config: Config, **options) -> Redis | RedisCluster:
    """A client of the configured Redis: one node, or a cluster (its slot map read from the node
    the URL names, on first use). Options override the configured timeouts and pool size."""
    settings = {"socket_timeout": config.redis.timeout_seconds,
                "socket_connect_timeout": config.redis.timeout_seconds,
                "health_check_interval": 30, "max_connections": 200, **options}
    cluster_url = redis_cluster_url(config)
    if cluster_url is not None:
        # max_connections is per node on a cluster
        return RedisCluster.from_url(cluster_url, **settings)
    client = Redis.from_url(config.redis.url, **settings)
    pool = client.connection_pool
    pool.connection_class = hiredis_packing(pool.connection_class)
    return client


class HiredisPacking:
    """Commands packed by hiredis, in C. redis-py's asyncio connections pack in Python, joining the
    buffer anew for each argument: the bus's publish script for a batch of messages, a few hundred
    arguments, took about 80 µs to pack. The bytes are the same; arguments hiredis does not take
    (a memoryview, a bool, None) go to redis-py's packer, which packs or refuses them as before.
    One node only: a Redis Cluster's node connections keep redis-py's own packer."""

    def pack_command(self, *args):
        name = args[0]
        if isinstance(name, (str, bytes)) and (" " if isinstance(name, str) else b" ") in name:
            args = (*name.split(), *args[1:])  # "CONFIG GET": the words go as arguments of their own
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)  # type: ignore[misc]


class DirectSend:
    """Commands written at once when nothing is waiting to be sent. redis-py sends each command
    under `asyncio.wait_for(..., socket_timeout)`, which on Python 3.11 makes a task per command
    and writes it a turn of the loop later: about 20 µs of CPU a command, a page's Redis call
    included. Into an empty write buffer there is nothing to wait for: the bytes go to the
    transport now, and the reply is still read under the socket timeout, so a Valkey that stops
    answering fails the command as before. A command behind unsent bytes (a Valkey that stopped
    reading) takes redis-py's path, which waits for the buffer to drain, as long as the timeout."""

    async def send_packed_command(self, command, check_health: bool = True) -> None:
        if check_health and self._writer is not None:  # type: ignore[attr-defined]
            await self.check_health()  # type: ignore[attr-defined]  (may reconnect)
            check_health = False
        writer = self._writer  # type: ignore[attr-defined]
        if (writer is None or not isinstance(command, list) or writer.transport.is_closing()
                or writer.transport.get_write_buffer_size()):
            return await super().send_packed_command(command, check_health)  # type: ignore[misc]
        writer.writelines(command)


@functools.cache
def hiredis_packing(connection_class: type) -> type:
    """A connection class (plain, TLS or a Unix socket: what the URL asked for) that packs with
    hiredis and writes commands at once (DirectSend)."""
    return type(f"Hiredis{connection_class.__name__}", (HiredisPacking, DirectSend, connection_class), {})


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Redis client (hiredis parses its replies and packs its commands), and the rate limiter,
    timelines and story trays on it."""
    config = app[config_key]
    redis = open_redis(config)
    app[redis_key] = redis
    app[limiter_key] = RateLimiter(redis)
    app[timelines_key] = Timelines(redis, cap=config.feed.cap)
    app[tray_cache_key] = stories.TrayCache(redis, config.stories.tray_ttl)
    yield
    await redis.aclose()


def open_s3(config: Config):
    """An S3 client (aiobotocore) for the configured endpoint, as an async context manager."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    return get_session().create_client(
        "s3", endpoint_url=config.s3.endpoint, region_name=config.s3.region,
        aws_access_key_id=config.s3.access_key, aws_secret_access_key=config.s3.secret_key,
        config=AioConfig(s3={"addressing_style": "path"}, signature_version="s3v4",
                         connect_timeout=3, read_timeout=30, retries={"max_attempts": 2}),
    )


async def s3_ctx(app: web.Application) -> AsyncIterator[None]:
    """The S3 client (aiobotocore)."""
    async with open_s3(app[config_key]) as client:
        app[s3_key] = client
        yield


class KafkaProducer:
    """The process's Kafka producer, started on first use so that a broker that is down at
    start-up delays events (they wait in the outbox) instead of stopping the process."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._producer = None
        self._lock = asyncio.Lock()

    async def get(self):
        """The started producer; raises while the broker cannot be reached."""
        async with self._lock:
            if self._producer is None:
                from aiokafka import AIOKafkaProducer

                # acks=all without idempotence: Tansu refuses InitProducerId; consumers dedupe by event id
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=False,
                    linger_ms=2, request_timeout_ms=10000, max_batch_size=256 * 1024,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def send(self, topic: str, value: bytes, key: bytes):
        """Queue one record; returns the future of its acknowledgement."""
        producer = await self.get()
        return await producer.send(topic, value, key=key)

    async def close(self) -> None:
        """Flush what is queued and stop."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


kafka_producer_key: web.AppKey[KafkaProducer | None] = web.AppKey("kafka_producer")


async def kafka_ctx(app: web.Application) -> AsyncIterator[None]:
    """The Kafka producer (transport "kafka" only); flushed on shutdown."""
    config = app[config_key]
    producer = KafkaProducer(config.events.kafka_bootstrap) if config.events.transport == "kafka" else None
    app[kafka_producer_key] = producer
    yield
    if producer is not None:
        await producer.close()


def make_search_backend(config: Config, pool):
    """The configured search backend on this pool (the Elasticsearch client is made here)."""
    from storage.search.postgres import PostgresSearch

    if config.search.backend == "postgres":
        return PostgresSearch(pool)
    from storage.search.elastic import ElasticsearchSearch, make_client

    search = config.search
    return ElasticsearchSearch(make_client(search.elasticsearch_url), pool, search.elasticsearch_index_prefix,
                               refresh=search.elasticsearch_refresh)


SEARCH_KINDS = ("users", "posts", "hashtags", "locations")


async def reindex_search(config: Config, kinds=SEARCH_KINDS, batch: int = 1000, progress=None) -> None:
    """Rebuild the Elasticsearch indexes from PostgreSQL; progress(kind, total, done) per batch."""
    pool = await db.create_pool(config.database.url, min_size=1, max_size=2)
    backend = make_search_backend(config, pool)
    try:
        for kind in kinds:
            total = await backend.count(kind)
            if progress is not None:
                progress(kind, total, 0)
            async for done in backend.reindex(kind, batch):
                if progress is not None:
                    progress(kind, total, done)
    finally:
        await backend.close()
        await pool.close()


async def search_ctx(app: web.Application) -> AsyncIterator[None]:
    """The search backend (issue 6); its indexes are made on first use, so a search server that is
    down at start-up does not stop the process."""
    backend = make_search_backend(app[config_key], app[pool_key])
    app[search_key] = backend
    yield
    await backend.close()


async def replicas_ctx(app: web.Application) -> AsyncIterator[None]:
    """Pools on the read replicas, if any, and the task that keeps measuring their lag."""
    config = app[config_key]
    urls = [url.strip() for url in config.database.replica_urls.split(",") if url.strip()]
    if not urls:
        app[replicas_key] = None
        yield
        return
    # no connection at start: a replica that is down must not stop the process, only be skipped
    pools = [await db.create_pool(url, min_size=0, max_size=config.database.pool_max) for url in urls]
    replicas = Replicas(pools, config.database.replica_max_lag)
    await replicas.check()
    stop = asyncio.Event()
    task = asyncio.create_task(replicas.run(stop, config.database.replica_check_seconds), name="replica-lag")
    app[replicas_key] = replicas
    yield
    stop.set()
    await task
    await replicas.close()


def realtime_ctx(sockets: weakref.WeakSet):
    """The cleanup context of the gateway (bus, heartbeats) and the message and receipt writers;
    `sockets` is the app's set of open websockets that shutdown closes."""

    def build(app: web.Application) -> Gateway:
        return Gateway(app[redis_key], app[config_key].realtime, on_frame=handle_frame, on_delivered=on_delivered,
                       sockets=sockets, verify_session=functools.partial(
                           check_session, app[pool_key], app[redis_key], app[config_key].auth.access_token_ttl))

    start_gateway = gateway_ctx(build)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async for _ in start_gateway(app):
            # the lanes' batches on connections of their own, planned once (see MessageWriter)
            lanes = app[config_key].realtime.message_writer_lanes
            store_pool = await db.create_pool(app[config_key].database.url, min_size=0, max_size=lanes,
                                              generic_plans=True)
            writer = app[writer_key] = MessageWriter(app[pool_key], app[gateway_key], lanes=lanes,
                                                     store_pool=store_pool)
            receipts = app[receipts_key] = ReceiptWriter(app[pool_key], app[gateway_key])
            writer.start()
            receipts.start()
            try:
                yield
            finally:
                await writer.stop()
                await receipts.stop()
                await store_pool.close()

    return ctx


async def enforcement_ctx(app: web.Application) -> AsyncIterator[None]:
    """What a moderator's resolution reaches after commit; after realtime_ctx, which makes the gateway."""
    config = app[config_key]
    app[enforcement_key] = Enforcement(app[pool_key], app[redis_key], app[s3_key], config.s3.bucket,
                                       app[tray_cache_key], app[gateway_key], config.auth.access_token_ttl)
    yield


def add_client_contexts(app: web.Application, config: Config) -> None:
    """Register the clients' cleanup contexts, in start-up order; the media link signer, the S3
    presigner and the box of two-factor secrets, which hold no connection, are made here once."""
    app[secret_box_key] = secret_box(config.auth.two_factor_key, config.auth.jwt_secret)
    app[links_key] = media.MediaLinks(config.media.url.rstrip("/"),
                                      media.link_secret(config.media.link_secret, config.auth.jwt_secret),
                                      config.s3.url_ttl)
    app[presigner_key] = media.UrlSigner(config.s3.public_endpoint or config.s3.endpoint, config.s3.region,
                                         config.s3.access_key, config.s3.secret_key, config.s3.bucket,
                                         config.s3.url_ttl)
    app.cleanup_ctx.extend([postgres_ctx, redis_ctx, s3_ctx, kafka_ctx, replicas_ctx])
    app.cleanup_ctx.append(search_ctx)  # after postgres: the backend reads documents from the pool
