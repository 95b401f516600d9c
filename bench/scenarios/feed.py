"""feed: many users read their home feed (GET /api/posts/feed/), first page and (optionally) more.

Each client reads as a different user each time (tokens cycle over `users` seeded active users,
who have timelines in Redis), so the figure is not one hot timeline in a cache.
Options: page_size (20), pages (1: follow `next` this many pages deep), users (5000).

The other page lists share this reader (page_scenario): `explore` (GET /api/posts/explore/; the
trending ranking is computed first if Redis has none), `profile` (an author's grid, GET
/api/posts/?author=, over the seeded authors) and `saved` (GET /api/posts/saved/; each sampled
user who has saved fewer than a page gets posts of accounts they follow saved first).
"""

from __future__ import annotations

from bench.scenarios import mint_tokens, option, require_routes, sample_users

PAGES = {"feed": "/api/posts/feed/", "explore": "/api/posts/explore/", "profile": "/api/posts/",
         "saved": "/api/posts/saved/"}
FEED = PAGES["feed"]

SAVE_SOME = """
INSERT INTO saves (user_id, post_id)
SELECT f.follower_id, p.id FROM follows f
CROSS JOIN LATERAL (SELECT id FROM posts WHERE author_id = f.followee_id ORDER BY id DESC LIMIT 3) p
WHERE f.follower_id = ANY($1::bigint[])
  AND (SELECT count(*) FROM saves s WHERE s.user_id = f.follower_id) < $2
ON CONFLICT DO NOTHING
"""


async def fill_trending(options) -> None:
    """The explore ranking, as glint's job makes it, when Redis has none yet."""
    import asyncpg
    from redis.asyncio import Redis

    from storage import explore

    redis = Redis.from_url(options.redis_url)
    try:
        if not await redis.exists(explore.KEY):
            pool = await asyncpg.create_pool(options.database_url, min_size=1, max_size=2)
            try:
                await explore.store_trending(redis, await explore.compute_trending(pool, 24 * 30))
            finally:
                await pool.close()
    finally:
        await redis.aclose()


async def fill_saves(options, users: list[int], page_size: int) -> None:
    """Saved posts for the users that have fewer than a page of them."""
    import asyncpg

    conn = await asyncpg.connect(options.database_url)
    try:
        await conn.execute(SAVE_SOME, users, page_size)
    finally:
        await conn.close()


def page_scenario(name: str):
    """prepare() and work() of the scenario reading the page list `name` (a key of PAGES)."""
    route = PAGES[name]

    async def prepare(target, options) -> dict:
        await require_routes(target.url, "GET " + route)
        users = sample_users(target, int(option(options, "users", 5000)))
        page_size = int(option(options, "page_size", 20))
        queries = [f"?limit={page_size}"]
        if name == "profile":
            authors = [a["id"] for a in target.manifest.get("authors") or []][-int(option(options, "authors", 1000)):]
            queries = [f"?author={a}&limit={page_size}" for a in authors] or queries
        elif name == "explore" and options.redis_url and options.database_url:
            await fill_trending(options)
        elif name == "saved" and options.database_url:
            await fill_saves(options, users, page_size)
        return {"tokens": mint_tokens(options.jwt_secret, users, options.token_ttl), "queries": queries,
                "pages": int(option(options, "pages", 1))}

    async def work(ctx) -> None:
        tokens, queries, pages = ctx.plan["tokens"], ctx.plan["queries"], ctx.plan["pages"]
        turn = {"n": 0}

        async def client(number: int) -> None:
            n = number + turn["n"] * ctx.options.concurrency
            turn["n"] += 1
            path = route + queries[n % len(queries)]
            for page in range(pages):
                body = await ctx.request(name if page == 0 else f"{name}_next_page", "GET", path,
                                         token=tokens[n % len(tokens)], decode=page + 1 < pages)
                if not body or not body.get("next"):
                    break
                path = body["next"]

        await ctx.each_client(client)

    return prepare, work


prepare, work = page_scenario("feed")
