"""Typed keys for what the application holds: the config and every client handlers use.

app/ fills them in its cleanup contexts; handlers read them from `request.app`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from storage.ratelimit import RateLimiter

if TYPE_CHECKING:  # only app/ reads configuration; handlers only see the decoded Struct
    from app.config import Config

config_key: web.AppKey[Config] = web.AppKey("config")
pool_key = web.AppKey("pool", asyncpg.Pool)
redis_key = web.AppKey("redis", Redis)
limiter_key = web.AppKey("limiter", RateLimiter)
s3_key: web.AppKey[Any] = web.AppKey("s3")
kafka_producer_key: web.AppKey[Any] = web.AppKey("kafka_producer")

# per-request storage
request_id_key = web.RequestKey("request_id", str)
identity_key: web.RequestKey[Any] = web.RequestKey("identity")

# media links (storage.media.MediaLinks) and the S3 presigner (storage.media.UrlSigner), made once per app
links_key: web.AppKey[Any] = web.AppKey("links")
presigner_key: web.AppKey[Any] = web.AppKey("presigner")

# home timelines (storage.timelines.Timelines), made once per app
timelines_key: web.AppKey[Any] = web.AppKey("timelines")

# the clock that decides time-based rules (story expiry, TOTP steps, the deletion grace period),
# `() -> aware datetime`; absent means real time, tests set it before the app starts to move time
# without sleeping
clock_key: web.AppKey[Any] = web.AppKey("clock")


def app_now(app: web.Application) -> datetime:
    """The app's clock: real UTC time unless a test set `clock_key`."""
    clock = app.get(clock_key)
    return clock() if clock is not None else datetime.now(timezone.utc)


# read replicas (storage.replicas.Replicas), or None when none is configured
replicas_key: web.AppKey[Any] = web.AppKey("replicas")

# the search backend (storage.search.SearchBackend: postgres or elasticsearch), made once per app
search_key: web.AppKey[Any] = web.AppKey("search")
