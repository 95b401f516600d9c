"""Typed keys for what the application holds: the config and every client handlers use.

app/ fills them in its cleanup contexts; handlers read them from `request.app`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from storage.email import EmailSink
from storage.media import MediaLinks, UrlSigner
from storage.ratelimit import RateLimiter
from storage.replicas import Replicas
from storage.search import SearchBackend
from storage.stories import TrayCache
from storage.timelines import Timelines

if TYPE_CHECKING:  # only app/ reads configuration; handlers only see the decoded Struct
    from aiobotocore.client import AioBaseClient

    from app.config import Config
    from handlers.admin import Enforcement
    from handlers.auth import Identity
    from handlers.two_factor import SecretBox

config_key: web.AppKey[Config] = web.AppKey("config")
pool_key = web.AppKey("pool", asyncpg.Pool)
redis_key = web.AppKey("redis", Redis)
limiter_key = web.AppKey("limiter", RateLimiter)
s3_key: web.AppKey[AioBaseClient] = web.AppKey("s3")
# where e-mail goes (storage.email: SMTP, or the sent_emails table), made once per app
email_sink_key: web.AppKey[EmailSink] = web.AppKey("email_sink")
# the per-viewer story tray cache, made once per app with the configured lifetime
tray_cache_key = web.AppKey("tray_cache", TrayCache)

# the box TOTP secrets are sealed in (handlers.two_factor.SecretBox), made once per app from the configured key
secret_box_key: web.AppKey[SecretBox] = web.AppKey("secret_box")

# what a moderator's resolution reaches after commit (handlers.admin.Enforcement), made once the gateway is up
enforcement_key: web.AppKey[Enforcement] = web.AppKey("enforcement")

# per-request storage
request_id_key = web.RequestKey("request_id", str)
identity_key: web.RequestKey[Identity] = web.RequestKey("identity")
# the reply of the route's first read, made in the rate limit's script call (handlers.auth.first_read)
ridden_key: web.RequestKey[Any] = web.RequestKey("ridden")

# media links (storage.media.MediaLinks) and the S3 presigner (storage.media.UrlSigner), made once per app
links_key = web.AppKey("links", MediaLinks)
presigner_key = web.AppKey("presigner", UrlSigner)

# home timelines (storage.timelines.Timelines), made once per app
timelines_key = web.AppKey("timelines", Timelines)

# the clock that decides time-based rules (story expiry, TOTP steps, the deletion grace period),
# `() -> aware datetime`; absent means real time, tests set it before the app starts to move time
# without sleeping
clock_key: web.AppKey[Callable[[], datetime]] = web.AppKey("clock")


def app_now(app: web.Application) -> datetime:
    """The app's clock: real UTC time unless a test set `clock_key`."""
    clock = app.get(clock_key)
    return clock() if clock is not None else datetime.now(timezone.utc)


# read replicas (storage.replicas.Replicas), or None when none is configured
replicas_key: web.AppKey[Replicas | None] = web.AppKey("replicas")

# the search backend (storage.search.SearchBackend: postgres or elasticsearch), made once per app
search_key: web.AppKey[SearchBackend] = web.AppKey("search")
