"""search: user, post and hashtag search (GET /api/search/{kind}/?q=), with prefixes, whole words
and hashtags from the seed; falls back to the users list filter (GET /api/accounts/users/?q=)
where search has not landed.

Options: users (1000), kinds ("users,posts,hashtags").
"""

from __future__ import annotations

import random

from bench.runner import ScenarioSkipped
from bench.scenarios import mint_tokens, option, require_routes, sample_users


async def prepare(target, options) -> dict:
    served = await require_routes(target.url)
    paths = {}
    for kind in str(option(options, "kinds", "users,posts,hashtags")).split(","):
        path = f"/api/search/{kind}/"
        if f"GET {path}" in served:
            paths[f"search_{kind}"] = path
    if not paths and "GET /api/accounts/users/" in served:
        paths["users_prefix"] = "/api/accounts/users/"
    if not paths:
        raise ScenarioSkipped(f"{target.url} serves no search route")
    terms = list(target.manifest.get("search_terms") or []) or ["bench", "ana", "sunset"]
    users = sample_users(target, int(option(options, "users", 1000)), key="any_users")
    return {"tokens": mint_tokens(options.jwt_secret, users, options.token_ttl), "paths": paths, "terms": terms}


async def work(ctx) -> None:
    from urllib.parse import quote

    rng = random.Random(ctx.index)
    tokens, paths, terms = ctx.plan["tokens"], list(ctx.plan["paths"].items()), ctx.plan["terms"]

    async def client(number: int) -> None:
        op, path = rng.choice(paths)
        await ctx.request(op, "GET", f"{path}?q={quote(rng.choice(terms))}&limit=20", token=rng.choice(tokens))

    await ctx.each_client(client)
