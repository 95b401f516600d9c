"""The reference ceiling: a bare server that does only what a feed page cannot do without.

    python -m bench.reference --port 18090 [--redis-url URL]
    glint bench feed --url http://127.0.0.1:$PORT --compare reference     # started for the run

The same process model as glint (aiohttp on uvloop, one process, redis-py with hiredis), the same
Redis, the same keys: a page is the viewer's home timeline (ZREVRANGEBYSCORE on glint's
timeline key, the viewer read from the token's `sub` without checking it) and one MGET of glint's
own cached post bodies, spliced into a page of the same shape by glint's own code
(handlers.posts.post_body), with no rules: no authentication, rate limit, visibility, blocks,
mutes, counts, viewer's flags, celebrity merge, rebuild on a miss, nor signing (links carry a
fixed placeholder signature). Explore reads glint's trending ranking (ZREVRANGE); the other page
routes the bench reads (feed, profile, saved) answer the viewer's timeline page, as profile and
saved lists live only in PostgreSQL: the ceiling of "a page of 20 cached posts from Redis". It serves
/metrics (process CPU) and /api/openapi.json (the routes), as the bench reads them from glint.
"""

from __future__ import annotations

import argparse
import base64
import json

from aiohttp import web

PAGES = ("/api/posts/feed/", "/api/posts/explore/", "/api/posts/", "/api/posts/saved/")


class UnsignedLinks:
    """Stands in for storage.media.MediaLinks: the link's shape, without the MD5."""

    def folder(self, folder: str, kind: str, now: float | None = None, expires: int | None = None) -> str:
        return f"/api/media/{'v' if kind == 'video' else 'i'}/{expires}/{'-' * 22}/{folder}"

    def avatar(self, key: str | None, expires: int | None = None) -> str | None:
        if key is None:
            return None
        folder, _, name = key.rpartition("/")
        return self.folder(folder + "/", "image", expires=expires) + name


def viewer_of(request: web.Request) -> int:
    """The user the token names, unchecked (base64 of the JWT's claims)."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    try:
        claims = token.split(".")[1]
        return int(json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sub"])
    except (IndexError, KeyError, ValueError):
        raise web.HTTPUnauthorized() from None


def build(redis_url: str) -> web.Application:
    import msgspec
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    from redis.asyncio import Redis

    from handlers.posts import decode_cached_post, post_body
    from storage import cluster, explore
    from storage.posts import post_cache_key
    from storage.timelines import Timelines

    redis = Redis.from_url(redis_url, max_connections=200)
    links = UnsignedLinks()
    zero = {"like_count": 0, "comment_count": 0, "liked": False, "saved": False}
    encode = msgspec.json.Encoder().encode

    async def page(request: web.Request) -> web.Response:
        limit = min(int(request.query.get("limit", "20")), 100)
        if request.path == "/api/posts/explore/":
            ids = await redis.zrevrange(explore.KEY, 0, limit)
        else:
            ids = await redis.zrevrangebyscore(Timelines.key(viewer_of(request)), "+inf", "(0", start=0, num=limit + 1)
        shown = ids[:limit]
        bodies = await cluster.mget(redis, [post_cache_key(int(i)) for i in shown]) if shown else []
        results = []
        for body in bodies:
            try:
                results.append(post_body(links, decode_cached_post(body), zero, 0))
            except (TypeError, msgspec.DecodeError, msgspec.ValidationError):  # not cached (or of another form)
                pass
        next_url = f"{request.path}?cursor={int(ids[limit])}&limit={limit}" if len(ids) > limit else None
        return web.Response(body=encode({"results": results, "next": next_url}), content_type="application/json")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response({"paths": {path: {"get": {}} for path in PAGES}})

    async def close(app: web.Application) -> None:
        await redis.aclose()

    app = web.Application()
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/openapi.json", openapi)
    app.on_cleanup.append(close)
    return app


def main(argv: list[str] | None = None) -> None:
    import uvloop

    parser = argparse.ArgumentParser(description="glint's reference ceiling: a bare feed page server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", default=None, help="default: glint's configured Redis")
    args = parser.parse_args(argv)
    if args.redis_url is None:
        from app.config import load_config

        args.redis_url = load_config().redis.url
    web.run_app(build(args.redis_url), host=args.host, port=args.port, access_log=None, print=None,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
