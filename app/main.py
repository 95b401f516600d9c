"""The application factory."""

from __future__ import annotations

import weakref

from aiohttp import WSCloseCode, web

from app import middlewares
from app.background import Background, background_ctx, background_key, platform_jobs
from app.clients import add_client_contexts
from app.config import Config
from app.ops import add_openapi_routes, add_ops_routes
from handlers import accounts, auth, graph
from handlers import comments as comments_handlers
from handlers import media as media_handlers
from handlers import messages as messages_handlers
from handlers import notifications as notifications_handlers
from handlers import posts as posts_handlers
from handlers import search as search_handlers
from handlers import stories as stories_handlers
from handlers.common import Routes
from handlers.context import config_key, pool_key, redis_key, s3_key
from handlers.context import search_key
from jobs.events import Consumer
from jobs.media import media_jobs
from jobs.notifications import NotificationConsumer, delete_old
from jobs.periodic import Job
from jobs.search import SearchConsumer
from jobs.stories import story_jobs
from storage.sinks import HttpPushSink, TablePushSink

ROUTE_MODULES: list[Routes] = [auth.routes, accounts.routes, graph.routes, media_handlers.routes, posts_handlers.routes, comments_handlers.routes]

ROUTE_MODULES += [messages_handlers.routes]  # direct messages and /ws
ROUTE_MODULES += [stories_handlers.routes]  # stories (its fixed paths come before /api/stories/{id}/)
ROUTE_MODULES += [notifications_handlers.routes]  # notifications, preferences, push devices
ROUTE_MODULES += [search_handlers.routes]  # search (issue 6)

sockets_key = web.AppKey("sockets", weakref.WeakSet)


async def close_sockets(app: web.Application) -> None:
    """On shutdown, close every websocket with GOING_AWAY so clients reconnect elsewhere."""
    for ws in list(app[sockets_key]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def media_job_factory(app: web.Application) -> list[Job]:
    """Removal of uploads never attached and of deleted posts' media."""
    config = app[config_key]
    return media_jobs(app[pool_key], app[s3_key], config.s3_bucket, config.media_unattached_ttl)


def notification_consumers(app: web.Application) -> list[Consumer]:
    """Notifications from events, delivered over /ws, push (table or HTTP sink) and e-mail."""
    config = app[config_key]
    pool = app[pool_key]
    push = TablePushSink(pool) if config.notifications_push_sink == "table" else HttpPushSink(
        pool, config.push_timeout_seconds, config.push_max_attempts, config.push_retry_base_seconds)
    return [NotificationConsumer(pool, app[redis_key], push, accounts.email_sink(app), config.notifications_group_window)]


def notification_jobs(app: web.Application) -> list[Job]:
    """Daily deletion of old notifications."""
    days = app[config_key].notifications_retention_days
    return [Job("notifications_retention", 24 * 3600, lambda: delete_old(app[pool_key], days))]


def story_job_factory(app: web.Application) -> list[Job]:
    """Archiving expired stories and removing their media after the grace period."""
    config = app[config_key]
    return story_jobs(app[pool_key], app[s3_key], config.s3_bucket, lambda: stories_handlers.app_now(app),
                      config.stories_media_grace, config.stories_job_interval)


def search_consumers(app: web.Application) -> list[Consumer]:
    """Search indexing from account and post events (a no-op sync with the postgres backend)."""
    return [SearchConsumer(app[search_key])]


def create_app(config: Config, *, consumers: bool = True, extra_consumers: list[Consumer] | None = None,
               http: bool = True) -> web.Application:
    """Build the application: clients, middlewares, routes, background work.

    consumers=False serves requests only (N API processes behind a load balancer); http=False is
    the `glint consume` worker, which serves only the operations routes.
    """
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[
            middlewares.request_context,
            middlewares.errors,
            middlewares.cors(config.cors_origins),
            middlewares.gzip(config.gzip_min_bytes),
            middlewares.authenticate,
        ],
    )
    app[config_key] = config
    app[sockets_key] = weakref.WeakSet()
    app[background_key] = Background(run_consumers=consumers, consumers=list(extra_consumers or []))
    add_client_contexts(app, config)
    app.cleanup_ctx.append(background_ctx(consumer_factories=[notification_consumers, search_consumers], job_factories=[platform_jobs, media_job_factory, story_job_factory, notification_jobs]))
    app.on_shutdown.append(close_sockets)
    add_ops_routes(app)
    if http:
        app.cleanup_ctx.append(messages_handlers.realtime_ctx(app[sockets_key]))  # /ws gateway, bus, writers
        docs = [doc for module in ROUTE_MODULES for doc in module.docs]
        for module in ROUTE_MODULES:
            module.add_to(app)
        add_openapi_routes(app, docs)
    return app
