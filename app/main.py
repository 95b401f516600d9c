"""The application factory: every domain's routes, consumers and jobs are wired here."""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

from aiohttp import WSCloseCode, web

from app import middlewares
from app.background import Background, background_ctx, background_key, platform_jobs
from app.clients import add_client_contexts, enforcement_ctx, realtime_ctx
from app.config import Config, check_secrets
from app.ops import add_openapi_routes, add_ops_routes
from app.web import DEFAULT_DIST, add_web_routes
from handlers import (
    accounts, admin, auth, comments, conversations, export, feed, graph, media, messages, notifications, posts,
    reports, safety, search, socket, stories,
)
from handlers.common import Routes
from handlers.context import (app_now, config_key, email_sink_key, links_key, pool_key, redis_key, s3_key, search_key,
                              timelines_key)
from jobs.erasure import erasure_jobs
from jobs.events import Consumer
from jobs.export import ExportConsumer, export_jobs
from jobs.feed import FeedConsumer
from jobs.media import media_jobs
from jobs.notifications import NotificationConsumer, delete_old
from jobs.periodic import Job
from jobs.safety import PasswordResetConsumer
from jobs.search import SearchConsumer
from jobs.stories import story_jobs
from storage import explore, exports
from storage.sinks import HttpPushSink, TablePushSink

# Order matters where fixed paths share a prefix with a pattern: feed's /api/posts/feed/ and
# stories' /api/stories/feed/ are registered before /api/posts/{id}/ and /api/stories/{id}/.
ROUTE_MODULES: list[Routes] = [
    auth.routes, accounts.routes, safety.routes, export.routes, graph.routes, media.routes, feed.routes, posts.routes,
    comments.routes, conversations.routes, messages.routes, socket.routes, notifications.routes, stories.routes,
    search.routes, reports.routes, admin.routes,
]

sockets_key = web.AppKey("sockets", weakref.WeakSet)


def feed_consumers(app: web.Application) -> list[Consumer]:
    """Fan-out on write into home timelines."""
    config = app[config_key]
    return [FeedConsumer(app[pool_key], app[timelines_key], config.feed.celebrity_threshold, config.feed.active_days)]


def feed_jobs(app: web.Application) -> list[Job]:
    """Explore's ranking, recomputed on an interval."""
    config = app[config_key]

    async def recompute_explore() -> int:
        ranking = await explore.compute_trending(app[pool_key], config.feed.explore_window_hours)
        await explore.store_trending(app[redis_key], ranking)
        return len(ranking)

    return [Job("explore", config.feed.explore_interval, recompute_explore)]


async def close_sockets(app: web.Application) -> None:
    """On shutdown, close every websocket with GOING_AWAY so clients reconnect elsewhere."""
    closing = [ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in list(app[sockets_key])]
    if closing:
        # a client that stopped reading must not hold up the shutdown
        await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=2.0)


def media_job_factory(app: web.Application) -> list[Job]:
    """Removal of uploads never attached and of deleted posts' media."""
    config = app[config_key]
    return media_jobs(app[pool_key], app[s3_key], config.s3.bucket, config.media.unattached_ttl)


def story_job_factory(app: web.Application) -> list[Job]:
    """Archiving expired stories and removing their media after the grace period."""
    config = app[config_key]
    return story_jobs(app[pool_key], app[s3_key], config.s3.bucket, lambda: app_now(app),
                      config.stories.media_grace, config.stories.job_interval)


def notification_consumers(app: web.Application) -> list[Consumer]:
    """Notifications from events, delivered over /ws, push (table or HTTP sink) and e-mail."""
    settings = app[config_key].notifications
    pool = app[pool_key]
    push = TablePushSink(pool) if settings.push_sink == "table" else HttpPushSink(
        pool, settings.push_timeout_seconds, settings.push_max_attempts, settings.push_retry_base_seconds)
    return [NotificationConsumer(pool, app[redis_key], push, app[email_sink_key], settings.group_window,
                                 app[links_key])]


def moderation_jobs(app: web.Application) -> list[Job]:
    """Lifting suspensions whose `until` has passed, every minute."""
    pool, redis = app[pool_key], app[redis_key]
    return [Job("suspensions", 60, lambda: admin.lift_expired_suspensions(pool, redis))]


def notification_jobs(app: web.Application) -> list[Job]:
    """Daily deletion of old notifications."""
    days = app[config_key].notifications.retention_days
    return [Job("notifications_retention", 24 * 3600, lambda: delete_old(app[pool_key], days))]


def search_consumers(app: web.Application) -> list[Consumer]:
    """Search indexing from account and post events (a no-op sync with the postgres backend)."""
    return [SearchConsumer(app[search_key])]


def account_job_factory(app: web.Application) -> list[Job]:
    """Erasure of accounts whose deletion grace period is over; removal of expired exports."""
    config = app[config_key]
    pool, s3, bucket = app[pool_key], app[s3_key], config.s3.bucket

    def clock():
        return app_now(app)

    return [*erasure_jobs(pool, s3, bucket, clock, config.accounts.deletion_grace_days, config.accounts.jobs_interval,
                          key_sources=(exports.object_keys_of,)),
            *export_jobs(pool, s3, bucket, clock, config.accounts.jobs_interval)]


def safety_consumers(app: web.Application) -> list[Consumer]:
    """Account safety work done off the request: reset tokens minted and mailed, exports built."""
    config = app[config_key]
    return [PasswordResetConsumer(app[pool_key], app[email_sink_key], config.auth.password_reset_ttl,
                                  config.server.public_url),
            ExportConsumer(app[pool_key], app[s3_key], config.s3.bucket, config.accounts.export_ttl,
                           lambda: app_now(app))]


def create_app(config: Config, *, consumers: bool = True, extra_consumers: list[Consumer] | None = None,
               http: bool = True) -> web.Application:
    """Build the application: clients, middlewares, routes, background work.

    consumers=False serves requests only (N API processes behind a load balancer); http=False is
    the `glint consume` worker, which serves only the operations routes.
    """
    check_secrets(config)  # no built-in secret: a process without its own does not start
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[
            middlewares.request_context,  # with the errors' envelope and the security headers
            middlewares.refuse_unstorable,
            middlewares.cors(config.server.cors_origins),
            middlewares.gzip(config.server.gzip_min_bytes),
            middlewares.authenticate,
            *([middlewares.read_your_writes(config.database.read_your_writes_seconds)] if config.database.replica_urls else []),
        ],
    )
    middlewares.json_protocol_errors()
    app[config_key] = config
    app[sockets_key] = weakref.WeakSet()
    app[background_key] = Background(run_consumers=consumers, consumers=list(extra_consumers or []))
    add_client_contexts(app, config)
    app.cleanup_ctx.append(background_ctx(consumer_factories=[feed_consumers, notification_consumers, search_consumers,
                                                              safety_consumers],
                                          job_factories=[platform_jobs, feed_jobs, media_job_factory, story_job_factory,
                                                         notification_jobs, account_job_factory, moderation_jobs]))
    app.on_shutdown.append(close_sockets)
    add_ops_routes(app)
    if http:
        app.cleanup_ctx.append(realtime_ctx(app[sockets_key]))  # /ws gateway, bus, writers
        app.cleanup_ctx.append(enforcement_ctx)  # on the gateway
        docs = [doc for module in ROUTE_MODULES for doc in module.docs]
        for module in ROUTE_MODULES:
            module.add_to(app)
        add_openapi_routes(app, docs)
        add_web_routes(app, Path(config.server.web_dist) if config.server.web_dist else DEFAULT_DIST)
    return app
