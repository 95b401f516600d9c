"""Search latency, postgres backend against elasticsearch (osmem-server), on the same seeded data.

    python -m bench.search [--users 10000] [--posts 100000] [--requests 300] [--out results.json]
                           [--compare OTHER_TREE --rounds 2]

Starts its own stack (PostgreSQL, Valkey, osmem) on free ports in a temporary folder, seeds users
and posts with COPY (captions from a word list with hashtags, some locations, a tenth of the
accounts private, a few blocks and follows for the viewer), rebuilds the Elasticsearch indexes
with the same code as `glint search reindex`, then serves the real app once per backend and times
GET /api/search/{kind}/ over HTTP, one request at a time: prefixes, whole words and one-letter
typos. Prints p50/p90/p99 per backend and kind (and writes them as JSON with --out).

With --compare, the postgres backend of another checkout of glint (a `git worktree` of an older
commit) is timed in the same run, on a database of its own made by its own migrations and seeded
with the same seed; the two are timed in turn, `--rounds` times each, the other tree's app in a
child process of its own (its code imported from that tree).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

import devstack
from bench.scenarios import open_seeded_sessions
from app.config import load_config
from app.main import create_app
from handlers.auth import make_access_token
from storage import db

WORDS = ["sunset", "coffee", "travel", "food", "city", "beach", "mountains", "friends", "art", "music", "street",
         "summer", "winter", "dog", "cat", "books", "design", "football", "running", "garden", "night", "rain",
         "market", "bike", "sea", "lake", "forest", "concert", "bread", "pizza", "museum", "sky", "photography",
         "architecture", "breakfast", "festival", "adventure", "weekend", "holiday", "portrait"]
FIRST = ["ana", "anastasia", "ben", "chloe", "dario", "emma", "femi", "greta", "hiro", "ines", "jonas", "kira",
         "liam", "maya", "noah", "olga", "pablo", "qin", "rosa", "sami", "tara", "umar", "vera", "wen", "zoë"]
LAST = ["silva", "smith", "kowalski", "tanaka", "garcía", "müller", "rossi", "dubois", "novak", "ivanova",
        "kim", "nguyen", "okafor", "larsen", "haddad", "costa", "fischer", "moreau", "sato", "jensen"]
PLACES = ["Zürich Hauptbahnhof", "Lisbon", "Porto Ribeira", "São Paulo", "Kraków Old Town", "Berlin Mitte",
          "Café de Flore", "Tokyo Tower", "Central Park", "Málaga Beach"]
KINDS = ("users", "posts", "hashtags", "locations")


def typo(word: str, rng: random.Random) -> str:
    """The word with one letter dropped (not the first)."""
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word))
    return word[:i] + word[i + 1:]


def queries(kind: str, rng: random.Random, n: int) -> list[str]:
    """A mix of prefixes, whole words and typos, as people type them."""
    pool = {"users": FIRST + LAST, "posts": WORDS, "hashtags": WORDS,
            "locations": [w for p in PLACES for w in p.split()]}[kind]
    out = []
    for _ in range(n):
        word = rng.choice(pool)
        shape = rng.random()
        out.append(word[:max(3, len(word) // 2)] if shape < 0.4 else typo(word, rng) if shape < 0.7 else word)
    return out


async def seed(dsn: str, users: int, posts: int, rng: random.Random) -> int:
    """COPY users, posts, hashtags and locations in; returns the viewer's id."""
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        rows = [(f"{rng.choice(FIRST)}_{rng.choice(LAST)}{i}".replace("ë", "e"), f"u{i}@bench.example", "x",
                 f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}", rng.random() < 0.1) for i in range(users)]
        await conn.copy_records_to_table("users", records=rows,
                                         columns=["username", "email", "password_hash", "full_name", "is_private"])
        user_ids = [r["id"] for r in await conn.fetch("SELECT id FROM users ORDER BY id")]
        await conn.copy_records_to_table("locations", records=[(p,) for p in PLACES], columns=["name"])
        location_ids = [r["id"] for r in await conn.fetch("SELECT id FROM locations")]
        tags = [f"{w}{s}" for w in WORDS for s in ("", "life", "lover", "daily", "gram", "of2026", "club", "art")]
        await conn.copy_records_to_table("hashtags", records=[(t,) for t in tags], columns=["name"])
        tag_ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM hashtags")}
        weights = [1 / (i + 1) for i in range(len(user_ids))]  # a few prolific authors, a long tail
        authors = rng.choices(user_ids, weights=weights, k=posts)
        post_rows, post_tags = [], []
        for author in authors:
            words = rng.choices(WORDS, k=rng.randint(3, 12))
            chosen = rng.sample(tags, k=rng.randint(0, 3)) if rng.random() < 0.5 else []
            caption = " ".join(words) + "".join(f" #{t}" for t in chosen)
            post_rows.append((author, caption, rng.choice(location_ids) if rng.random() < 0.2 else None))
            post_tags.append(chosen)
        await conn.copy_records_to_table("posts", records=post_rows, columns=["author_id", "caption", "location_id"])
        post_ids = [r["id"] for r in await conn.fetch("SELECT id FROM posts ORDER BY id")]
        links = {(tag_ids[t], pid) for pid, chosen in zip(post_ids, post_tags) for t in chosen}
        await conn.copy_records_to_table("post_hashtags", records=list(links), columns=["hashtag_id", "post_id"])
        viewer = user_ids[len(user_ids) // 2]
        others = rng.sample([u for u in user_ids if u != viewer], 300)
        await conn.copy_records_to_table("follows", records=[(viewer, u) for u in others[:200]],
                                         columns=["follower_id", "followee_id"])
        await conn.copy_records_to_table("blocks", records=[(viewer, u) for u in others[200:220]]
                                         + [(u, viewer) for u in others[220:240]], columns=["blocker_id", "blocked_id"])
        await conn.execute("ANALYZE")
        print(f"seeded {users} users, {posts} posts, {len(links)} hashtag links in {time.perf_counter() - t0:.1f}s")
        await open_seeded_sessions(conn, [viewer])  # the session the viewer's minted token names
        return viewer
    finally:
        await conn.close()


async def reindex(config) -> float:
    """Rebuild the Elasticsearch indexes as `glint search reindex` does; seconds taken."""
    from app.clients import make_search_backend

    pool = await db.create_pool(config.database.url, min_size=1, max_size=2)
    backend = make_search_backend(config, pool)
    t0 = time.perf_counter()
    try:
        for kind in KINDS:
            async for _ in backend.reindex(kind, 2000):
                pass
    finally:
        await backend.close()
        await pool.close()
    return time.perf_counter() - t0


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def measure(config, viewer: int, requests: int, seed_: int) -> dict[str, dict[str, float]]:
    """Serve the app on a free port and time each kind's searches, one at a time."""
    app = create_app(config, consumers=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = devstack.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    headers = {"Authorization": "Bearer " + make_access_token(config.auth.jwt_secret, viewer, viewer, 3600)}
    out: dict[str, dict[str, float]] = {}
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as http:
            for kind in KINDS:
                rng = random.Random(seed_)
                for q in queries(kind, rng, 20):  # warm-up: connections, plans, caches
                    async with http.get(f"/api/search/{kind}/", params={"q": q}) as r:
                        assert r.status == 200, await r.text()
                latencies, found = [], 0
                for q in queries(kind, rng, requests):
                    t0 = time.perf_counter()
                    async with http.get(f"/api/search/{kind}/", params={"q": q}) as r:
                        body = await r.json()
                    latencies.append((time.perf_counter() - t0) * 1000)
                    assert r.status == 200, body
                    found += bool(body["results"])
                out[kind] = {"p50_ms": round(percentile(latencies, 50), 2), "p90_ms": round(percentile(latencies, 90), 2),
                             "p99_ms": round(percentile(latencies, 99), 2), "hit_rate": round(found / requests, 3)}
    finally:
        await runner.cleanup()
    return out


async def fresh_database(base: str, name: str, tree: Path | None = None) -> str:
    """An empty database migrated by this tree's migrations, or by another tree's; its URL."""
    dsn = await devstack.fresh_database(base, name, migrate=tree is None)
    if tree is not None:
        await asyncio.to_thread(_in_tree, tree, "import asyncio, asyncpg, sys\nfrom storage import db\n"
                                "async def go():\n    conn = await asyncpg.connect(sys.argv[1])\n"
                                "    await db.migrate(conn)\n    await conn.close()\nasyncio.run(go())", dsn)
    return dsn


def _in_tree(tree: Path, code: str, *argv: str, env: dict[str, str] | None = None) -> str:
    """Run Python code with another tree's packages first on the path; its standard output."""
    prelude = f"import sys; sys.path.insert(0, {str(tree)!r})\n"
    done = subprocess.run([sys.executable, "-c", prelude + code, *argv], cwd=tree, env=env or os.environ.copy(),
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{tree}: {done.stderr[-2000:]}")
    return done.stdout


def measure_in_tree(tree: Path, env: dict[str, str], viewer: int, requests: int, seed_: int) -> dict:
    """measure() of another tree's app, in a child process importing that tree's code."""
    code = ("import asyncio, json, os, sys\nfrom app.config import load_config\nfrom bench.search import measure\n"
            "config = load_config({k: v for k, v in os.environ.items() if k.startswith('GLINT_')})\n"
            "print(json.dumps(asyncio.run(measure(config, int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))))")
    out = _in_tree(tree, code, str(viewer), str(requests), str(seed_), env={**os.environ, **env})
    return json.loads(out.strip().splitlines()[-1])


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict:
    base = env["GLINT_DATABASE_URL"].rsplit("/", 1)[0]
    dsn = await fresh_database(base, "glint_bench_search")
    viewer = await seed(dsn, args.users, args.posts, random.Random(args.seed))
    common = {k: v for k, v in env.items() if k.startswith("GLINT_")}
    common.update(GLINT_DATABASE_URL=dsn, GLINT_ACCESS_LOG="false", GLINT_JOBS_ENABLED="false",
                  GLINT_RATE_LIMIT_PER_HOUR="100000000", GLINT_ELASTICSEARCH_INDEX_PREFIX="glint-bench-")
    results: dict = {"users": args.users, "posts": args.posts, "requests_per_kind": args.requests}
    if args.compare:
        other = await fresh_database(base, "glint_bench_search_b", args.compare)
        other_viewer = await seed(other, args.users, args.posts, random.Random(args.seed))
        other_env = {**common, "GLINT_DATABASE_URL": other, "GLINT_SEARCH_BACKEND": "postgres"}
        config = load_config({**common, "GLINT_SEARCH_BACKEND": "postgres"})
        rounds: list[dict] = []
        for number in range(args.rounds):
            before = await asyncio.to_thread(measure_in_tree, args.compare, other_env, other_viewer, args.requests,
                                             args.seed)
            after = await measure(config, viewer, args.requests, args.seed)
            rounds.append({"round": number + 1, "load_average": [round(x, 2) for x in os.getloadavg()],
                           "before": before, "after": after})
            print(json.dumps(rounds[-1]), file=sys.stderr)
            if args.out:  # each round as it ends: a run cut short keeps what it measured
                args.out.write_text(json.dumps({**results, "compare": str(args.compare), "rounds": rounds}, indent=2) + "\n")
        results.update(compare=str(args.compare), rounds=rounds)
        return results
    for backend in args.backend or ["postgres", "elasticsearch"]:
        config = load_config({**common, "GLINT_SEARCH_BACKEND": backend})
        if backend == "elasticsearch":
            results["elasticsearch_reindex_seconds"] = round(await reindex(config), 1)
        results[backend] = await measure(config, viewer, args.requests, args.seed)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per backend and kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--backend", action="append", choices=["postgres", "elasticsearch"],
                        help="only this backend (repeatable; default both)")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another checkout of glint whose postgres backend is timed in the same run")
    parser.add_argument("--rounds", type=int, default=2, help="with --compare: timings of each tree, in turn")
    args = parser.parse_args()
    if args.compare:
        args.backend = ["postgres"]
    root = Path(tempfile.mkdtemp(prefix="glint-bench-search-"))
    services = ["postgres", "redis"] + (["osmem"] if "elasticsearch" in (args.backend or ["elasticsearch"]) else [])
    try:
        env = devstack.up(root, ports={s: devstack.free_port() for s in services}, services=services, fast=True,
                          log=lambda *a: None)
        results = asyncio.run(run(args, env))
    finally:
        devstack.destroy(root, log=lambda *a: None)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
