"""feed: many users read their home feed (GET /api/posts/feed/), first page and (optionally) more.

Each client reads as a different user each time (tokens cycle over `users` seeded active users,
who have timelines in Redis), so the figure is not one hot timeline in a cache.
Options: page_size (20), pages (1: follow `next` this many pages deep), users (5000).
"""

from __future__ import annotations

from bench.scenarios import mint_tokens, option, require_routes, sample_users

FEED = "/api/posts/feed/"


async def prepare(target, options) -> dict:
    await require_routes(target.url, "GET " + FEED)
    users = sample_users(target, int(option(options, "users", 5000)))
    return {"tokens": mint_tokens(options.jwt_secret, users, options.token_ttl),
            "page_size": int(option(options, "page_size", 20)), "pages": int(option(options, "pages", 1))}


async def work(ctx) -> None:
    tokens = ctx.plan["tokens"]
    turn = {"n": 0}

    async def client(number: int) -> None:
        token = tokens[(number + turn["n"] * ctx.options.concurrency) % len(tokens)]
        turn["n"] += 1
        path = f"{FEED}?limit={ctx.plan['page_size']}"
        for page in range(ctx.plan["pages"]):
            body = await ctx.request("feed" if page == 0 else "feed_next_page", "GET", path, token=token)
            if not body or not body.get("next"):
                break
            path = body["next"]

    await ctx.each_client(client)
