"""`glint bench seed`: a realistic graph, straight into PostgreSQL with COPY, and its Redis timelines.

What it makes, sized by --users (defaults per user in Plan):
- users with power-law follower counts: half of all follows go to accounts drawn by a Zipf law
  over a random popularity order, half to accounts drawn uniformly, so at 100,000 users about
  fifteen accounts pass 10,000 followers (the celebrity threshold: merged at read, not fanned out);
- posts over the last 30 days, each with a media row pointing at one of a handful of real small
  JPEGs (made once with pyvips, rendered by glint's own pipeline, uploaded to S3 once), hashtags in
  some captions, likes and comments with exact counters; each author's first photo as their avatar;
- 1:1 and group conversations with history (gapless seqs, read positions);
- the home timelines of recently active users in Redis, under the key names and cap of
  storage/timelines.py, holding what a rebuild would hold.

Ids are made here in glint's format (milliseconds since its epoch, a shard, a sequence), with
shard numbers the server never uses, so they sort by time like real ids and never collide with
ids the server makes later. Only tables and columns that exist are written (migrations land over
time): a missing table skips its part, and the report says so.

A manifest (JSON, beside the results by default) names sample users, authors by follower count,
celebrities, conversations and search terms, for the scenarios.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import asyncpg

from bench.scenarios import open_seeded_sessions

GLINT_EPOCH_MS = 1704067200000
PASSWORD = "bench-password"  # every seeded user's password (the locustfile logs in with it)
USERNAME = "bench{}"
SHARDS = {"users": 8101, "posts": 8102, "media": 8103, "comments": 8104, "likes": 8105, "conversations": 8106,
          "messages": 8107, "hashtags": 8108}
IMAGE_PREFIX = "bench/images"

FIRST = ["ana", "ben", "chloe", "dario", "emma", "femi", "greta", "hiro", "ines", "jonas", "kira", "liam", "maya",
         "noah", "olga", "pablo", "qin", "rosa", "sami", "tara", "umar", "vera", "wen", "ximena", "yusuf", "zoe"]
LAST = ["silva", "smith", "kowalski", "tanaka", "garcia", "muller", "rossi", "dubois", "novak", "ivanova",
        "kim", "nguyen", "okafor", "larsen", "haddad", "costa", "fischer", "moreau", "sato", "jensen"]
WORDS = ["sunset", "coffee", "travel", "food", "city", "beach", "mountains", "friends", "art", "music", "street",
         "summer", "winter", "dog", "cat", "books", "design", "football", "running", "garden", "night", "rain",
         "market", "bike", "sea", "lake", "forest", "concert", "bread", "pizza", "museum", "sky"]
PHRASES = ["so good", "love this", "where is this?", "amazing light", "miss it", "wow", "next time with me!",
           "great shot", "haha", "true", "on my way", "see you tonight", "did you see that?", "ok", "thanks!"]


@dataclass
class Plan:
    """How much to make. Per-user and per-post figures are means of skewed distributions."""

    users: int = 100_000
    follows_per_user: float = 30.0
    zipf_share: float = 0.5  # share of follows that go to popular accounts (the power law)
    zipf_exponent: float = 1.0
    posts_per_user: float = 3.0
    likes_per_post: float = 5.0
    comments_per_post: float = 1.0
    hashtag_share: float = 0.4  # posts whose caption has hashtags
    hashtags: int = 300
    conversations_per_user: float = 0.2
    group_share: float = 0.1
    messages_per_conversation: float = 15.0
    active_share: float = 0.3  # users active in the last days: they get timelines and fan-out
    images: int = 6
    seed: int = 1
    timelines: bool = True


@dataclass
class Seeded:
    """What a seed made, how long each step took, and what it skipped."""

    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    total_seconds: float = 0.0


class IdMaker:
    """Ids in glint's format for `n` rows spread evenly between two times (in order)."""

    def __init__(self, shard: int, start: datetime, end: datetime, n: int) -> None:
        self.base = int(start.timestamp() * 1000) - GLINT_EPOCH_MS
        self.span = max(int((end - start).total_seconds() * 1000), 1)
        self.n = max(n, 1)
        self.shard_bits = (shard % 8192) << 10
        if self.n > self.span * 1024:
            raise ValueError("too many ids for the time span")

    def id(self, i: int) -> int:
        return ((self.base + i * self.span // self.n) << 23) | self.shard_bits | (i % 1024)

    @staticmethod
    def time(id_: int) -> datetime:
        return datetime.fromtimestamp(((id_ >> 23) + GLINT_EPOCH_MS) / 1000, timezone.utc)


def _times(rng: random.Random, now: datetime, days_back: float, count: int = 4096) -> list[datetime]:
    """A pool of random times in the last `days_back` days (drawn from, rather than made per row)."""
    return [now - timedelta(seconds=rng.random() * days_back * 86400) for _ in range(count)]


def _skewed(rng: random.Random, mean: float, cap: int) -> int:
    """A count with the given mean and a long tail (exponential), at most `cap`."""
    if mean <= 0:
        return 0
    return min(int(rng.expovariate(1.0 / mean)), cap)


# ---------------------------------------------------------------- images


def make_images(count: int) -> list[bytes]:
    """A handful of small real JPEGs (gradients in different colours), made with pyvips."""
    import pyvips

    images = []
    for n in range(count):
        width, height = 640 + 40 * n, 480 + 30 * (n % 3)
        xyz = pyvips.Image.xyz(width, height)
        red = xyz[0] * (255.0 / width)
        green = xyz[1] * (255.0 / height)
        blue = (xyz[0] + xyz[1]) * (255.0 / (width + height)) * ((n + 1) / count)
        image = red.bandjoin([green, blue]).cast("uchar").copy(interpretation="srgb")
        images.append(image.jpegsave_buffer(Q=80))
    return images


async def upload_images(config: Any, images: list[bytes]) -> list[dict[str, Any]]:
    """Render each image through glint's own pipeline and put original and renditions in S3
    once; return the media-row templates that many media rows will share."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    from storage import media

    widths = [int(w) for w in config.media.rendition_widths.split(",")]
    templates = []
    session = get_session()
    async with session.create_client(
        "s3", endpoint_url=config.s3.endpoint, region_name=config.s3.region,
        aws_access_key_id=config.s3.access_key, aws_secret_access_key=config.s3.secret_key,
        config=AioConfig(s3={"addressing_style": "path"}, signature_version="s3v4"),
    ) as s3:
        for n, data in enumerate(images):
            rendered = await asyncio.to_thread(media.render_image, data, "jpeg", widths, config.media.max_pixels)
            prefix = f"{IMAGE_PREFIX}/{n}"
            renditions = {r.name: {"key": f"{prefix}/{r.name}", "width": r.width, "height": r.height,
                                   "content_type": r.content_type} for r in rendered.renditions}
            await media.upload_objects(s3, config.s3.bucket, [
                (f"{prefix}/original", data, "image/jpeg"),
                *((f"{prefix}/{r.name}", r.data, r.content_type) for r in rendered.renditions)])
            templates.append({"size_bytes": len(data), "width": rendered.width, "height": rendered.height,
                              "placeholder": rendered.placeholder, "original_key": f"{prefix}/original",
                              "renditions": json.dumps(renditions)})
    return templates


# ---------------------------------------------------------------- the graph, in memory


@dataclass
class Graph:
    """Everything generated before loading: rows per table, plus what the timelines and manifest need."""

    user_ids: list[int]
    rows: dict[str, tuple[tuple[str, ...], list[tuple]]] = field(default_factory=dict)
    following: list[list[int]] = field(default_factory=list)  # user index -> followee indexes
    followers_count: list[int] = field(default_factory=list)
    active: list[bool] = field(default_factory=list)
    posts_by_author: dict[int, list[int]] = field(default_factory=dict)  # user index -> post ids, ascending
    conversations: list[tuple[int, list[int]]] = field(default_factory=list)
    hashtag_names: list[str] = field(default_factory=list)


def _ids(maker: IdMaker, index):
    """IdMaker.id for an array of indexes (numpy int64)."""
    import numpy as np

    index = np.asarray(index, dtype=np.int64)
    return ((maker.base + index * maker.span // maker.n) << 23) | maker.shard_bits | (index % 1024)


def _skewed_many(rng, mean: float, size: int, cap: int):
    """`size` counts with the given mean and a long tail (exponential), each at most `cap`."""
    import numpy as np

    if mean <= 0 or size == 0:
        return np.zeros(size, dtype=np.int64)
    return np.minimum(rng.exponential(mean, size).astype(np.int64), cap)


def _distinct(keys):
    """The distinct values of an int64 array, sorted (sort and compare: numpy's hash-based unique
    is several times slower on millions of keys)."""
    import numpy as np

    keys = np.sort(keys)
    if len(keys) == 0:
        return keys
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))]


def _pairs(rng, n_left: int, counts, n_right: int, right=None):
    """Distinct (left, right) index pairs: `counts[i]` draws for left i, right drawn uniformly or
    given; duplicates and (for a graph) self-pairs removed. Sorted by left."""
    import numpy as np

    left = np.repeat(np.arange(n_left, dtype=np.int64), counts)
    if right is None:
        right = rng.integers(0, n_right, size=len(left), dtype=np.int64)
    keys = _distinct(left * n_right + right)
    return keys // n_right, keys % n_right


def generate(plan: Plan, password_hash: str, images: list[dict[str, Any]], now: datetime,
             celebrity_threshold: int) -> Graph:
    """Make every row in memory (deterministic for a plan's seed and `now`); numpy does the bulk
    draws, so 100,000 users take seconds."""
    import numpy as np

    rng = np.random.default_rng(plan.seed)
    prng = random.Random(plan.seed)
    n = plan.users
    year_ago = now - timedelta(days=365)
    users = IdMaker(SHARDS["users"], year_ago, now - timedelta(days=31), n)
    uids = _ids(users, np.arange(n))
    user_ids = uids.tolist()
    g = Graph(user_ids=user_ids)

    # follows: out-degree skewed; the followee drawn by a Zipf law over a random popularity order
    # (zipf_share of the draws) or uniformly; duplicates and self-follows dropped
    degree = _skewed_many(rng, plan.follows_per_user, n, min(max(n - 1, 0), 5000))
    popular = np.round(degree * plan.zipf_share).astype(np.int64)
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** plan.zipf_exponent
    order = rng.permutation(n)
    left = np.concatenate([np.repeat(np.arange(n, dtype=np.int64), popular),
                           np.repeat(np.arange(n, dtype=np.int64), degree - popular)])
    right = np.concatenate([order[rng.choice(n, size=int(popular.sum()), p=weights / weights.sum())],
                            rng.integers(0, n, size=int((degree - popular).sum()), dtype=np.int64)])
    keep = left != right
    keys = _distinct(left[keep] * n + right[keep])
    f_idx, t_idx = keys // n, keys % n
    followers_count = np.bincount(t_idx, minlength=n)
    following_count = np.bincount(f_idx, minlength=n)
    starts = np.searchsorted(f_idx, np.arange(n + 1))
    g.followers_count = followers_count.tolist()
    t_list = t_idx.tolist()
    s_list = starts.tolist()
    g.following = [t_list[s_list[u]:s_list[u + 1]] for u in range(n)]
    follow_times = _times(prng, now, 300)
    when = rng.integers(0, len(follow_times), size=len(keys)).tolist()
    g.rows["follows"] = (("follower_id", "followee_id", "created_at"),
                         list(zip(uids[f_idx].tolist(), uids[t_idx].tolist(), (follow_times[i] for i in when))))

    # who was active lately: they have timelines and are fanned out to
    g.active = (rng.random(n) < plan.active_share).tolist()
    recent = _times(prng, now, 10)
    long_ago = [now - timedelta(days=31) - timedelta(seconds=prng.random() * 300 * 86400) for _ in range(4096)]

    # hashtags
    g.hashtag_names = [f"{WORDS[i % len(WORDS)]}{i // len(WORDS) or ''}" for i in range(plan.hashtags)]
    tag_maker = IdMaker(SHARDS["hashtags"], year_ago, now - timedelta(days=31), max(plan.hashtags, 1))
    tag_ids = _ids(tag_maker, np.arange(plan.hashtags)).tolist()
    g.rows["hashtags"] = (("id", "name", "created_at"),
                          [(tag_ids[i], name, year_ago) for i, name in enumerate(g.hashtag_names)])

    # posts, each with one media row pointing at a shared image
    n_posts = round(n * plan.posts_per_user) if n else 0
    month_ago = now - timedelta(days=30)
    post_maker = IdMaker(SHARDS["posts"], month_ago, now - timedelta(minutes=1), n_posts)
    pids_np = _ids(post_maker, np.arange(n_posts))
    pids = pids_np.tolist()
    created = [IdMaker.time(p) for p in pids]
    authors_np = rng.integers(0, max(n, 1), size=n_posts, dtype=np.int64)
    authors = authors_np.tolist()
    posts_count = np.bincount(authors_np, minlength=n).tolist()
    for i, a in enumerate(authors):
        g.posts_by_author.setdefault(a, []).append(pids[i])
    words = rng.integers(0, len(WORDS), size=(n_posts, 2)).tolist()
    captions = [f"{WORDS[a]} {WORDS[b]} {i}" for i, (a, b) in enumerate(words)]
    post_tag_rows = []
    if plan.hashtags:
        tagged = np.nonzero(rng.random(n_posts) < plan.hashtag_share)[0]
        tag_weights = 1.0 / np.arange(1, plan.hashtags + 1)
        per_post = rng.integers(1, 4, size=len(tagged))
        p_idx, tags = _pairs(rng, len(tagged), per_post, plan.hashtags,
                             rng.choice(plan.hashtags, size=int(per_post.sum()), p=tag_weights / tag_weights.sum()))
        by_post: dict[int, list[int]] = {}
        for pi, t in zip(tagged[p_idx].tolist(), tags.tolist()):
            by_post.setdefault(pi, []).append(t)
            post_tag_rows.append((tag_ids[t], pids[pi]))
        for pi, ts in by_post.items():
            captions[pi] += " " + " ".join("#" + g.hashtag_names[t] for t in ts)
    g.rows["post_hashtags"] = (("hashtag_id", "post_id"), post_tag_rows)

    # likes and comments, with the posts' exact counters
    like_post, liker = _pairs(rng, n_posts, _skewed_many(rng, plan.likes_per_post, n_posts, n), max(n, 1))
    like_count = np.bincount(like_post, minlength=n_posts).tolist()
    likes_maker = IdMaker(SHARDS["likes"], month_ago, now, max(len(like_post), 1))
    g.rows["likes"] = (("post_id", "user_id", "id", "created_at"),
                       list(zip(pids_np[like_post].tolist(), uids[liker].tolist(),
                                _ids(likes_maker, np.arange(len(like_post))).tolist(),
                                (created[p] for p in like_post.tolist()))))
    comment_post = np.repeat(np.arange(n_posts, dtype=np.int64), _skewed_many(rng, plan.comments_per_post, n_posts, 50))
    comment_count = np.bincount(comment_post, minlength=n_posts).tolist()
    comments_maker = IdMaker(SHARDS["comments"], month_ago, now, max(len(comment_post), 1))
    phrase = rng.integers(0, len(PHRASES), size=len(comment_post)).tolist()
    commenter = uids[rng.integers(0, max(n, 1), size=len(comment_post))].tolist()
    g.rows["comments"] = (("id", "post_id", "author_id", "parent_id", "text", "like_count", "reply_count", "created_at"),
                          [(cid, pids[p], commenter[k], None, PHRASES[phrase[k]], 0, 0, created[p])
                           for k, (cid, p) in enumerate(zip(_ids(comments_maker, np.arange(len(comment_post))).tolist(),
                                                            comment_post.tolist()))])
    g.rows["posts"] = (("id", "author_id", "caption", "like_count", "comment_count", "created_at"),
                       [(pids[i], user_ids[authors[i]], captions[i], like_count[i], comment_count[i], created[i])
                        for i in range(n_posts)])
    media_rows, post_media_rows = [], []
    if images:
        media_maker = IdMaker(SHARDS["media"], month_ago, now - timedelta(minutes=1), n_posts)
        mids = _ids(media_maker, np.arange(n_posts)).tolist()
        for i in range(n_posts):
            t = images[i % len(images)]
            media_rows.append((mids[i], user_ids[authors[i]], "image", "image/jpeg", t["size_bytes"], t["width"],
                               t["height"], t["placeholder"], t["original_key"], t["renditions"], created[i], created[i]))
            post_media_rows.append((pids[i], 0, mids[i]))
    # an avatar for everyone with a post, the photo of their first one: a page links one beside each post
    avatars: list[int | None] = [None] * n
    if images:
        for i in range(n_posts - 1, -1, -1):
            avatars[authors[i]] = mids[i]
    g.rows["media"] = (("id", "owner_id", "kind", "content_type", "size_bytes", "width", "height", "placeholder",
                        "original_key", "renditions", "attached_at", "created_at"), media_rows)
    g.rows["post_media"] = (("post_id", "position", "media_id"), post_media_rows)

    # conversations with history: 1:1 mostly with someone followed, some groups
    n_conv = round(n * plan.conversations_per_user) if n > 1 else 0
    conv_maker = IdMaker(SHARDS["conversations"], month_ago, now - timedelta(days=1), max(n_conv, 1))
    n_msg_est = max(int(n_conv * plan.messages_per_conversation * 1.5) + 500 * 2, 1)
    msg_maker = IdMaker(SHARDS["messages"], month_ago, now, n_msg_est)
    msg_ids = _ids(msg_maker, np.arange(n_msg_est)).tolist()
    msg_made = 0
    conv_ids = _ids(conv_maker, np.arange(max(n_conv, 1))).tolist()
    pairs: set[str] = set()
    conv_rows, member_rows, message_rows = [], [], []
    for c in range(n_conv):
        u = prng.randrange(n)
        if prng.random() < plan.group_share and n >= 3:
            members = list({u, *prng.sample(range(n), prng.randint(2, min(5, n - 1)))})
            kind, pair_key, title = "group", None, f"{prng.choice(WORDS)} group"
        else:
            v = prng.choice(g.following[u]) if g.following[u] else prng.randrange(n)
            if v == u:
                continue
            pair_key = f"{min(user_ids[u], user_ids[v])}:{max(user_ids[u], user_ids[v])}"
            if pair_key in pairs:
                continue
            pairs.add(pair_key)
            members, kind, title = [u, v], "direct", ""
        count = max(1, _skewed(prng, plan.messages_per_conversation, 500))
        if msg_made + count > n_msg_est:
            break
        cid = conv_ids[c]
        started = IdMaker.time(cid)
        last_at = started
        for seq in range(1, count + 1):
            mid = msg_ids[msg_made]
            msg_made += 1
            last_at = max(last_at, IdMaker.time(mid))
            message_rows.append((mid, cid, seq, user_ids[members[prng.randrange(len(members))]], f"seed-{mid}",
                                 PHRASES[prng.randrange(len(PHRASES))], last_at))
        conv_rows.append((cid, kind, pair_key, title, user_ids[u], count, last_at, started))
        for m in members:
            read = count if prng.random() < 0.7 else max(0, count - prng.randint(1, 5))
            member_rows.append((cid, user_ids[m], read, count, started))
        g.conversations.append((cid, [user_ids[m] for m in members]))
    g.rows["conversations"] = (("id", "kind", "pair_key", "title", "created_by", "last_seq", "last_message_at",
                                "created_at"), conv_rows)
    g.rows["conversation_members"] = (("conversation_id", "user_id", "read_seq", "delivered_seq", "joined_at"),
                                      member_rows)
    g.rows["messages"] = (("id", "conversation_id", "seq", "sender_id", "client_id", "text", "created_at"),
                          message_rows)

    # users last: their counters are known now
    names = [f"{prng.choice(FIRST)} {prng.choice(LAST)}".title() for _ in range(2048)]
    following_list = following_count.tolist()
    g.rows["users"] = (("id", "username", "email", "password_hash", "full_name", "bio", "is_verified",
                        "posts_count", "followers_count", "following_count", "last_active_at", "created_at",
                        "avatar_media_id"),
                       [(user_ids[i], USERNAME.format(i), USERNAME.format(i) + "@bench.glint.test", password_hash,
                         names[i % 2048], "", g.followers_count[i] >= celebrity_threshold, posts_count[i],
                         g.followers_count[i], following_list[i],
                         recent[i % 4096] if g.active[i] else long_ago[i % 4096], IdMaker.time(user_ids[i]),
                         avatars[i])
                        for i in range(n)])
    return g


# ---------------------------------------------------------------- loading


SEEDED_TABLES = ("users", "follows", "hashtags", "media", "posts", "post_media", "post_hashtags", "likes",
                 "comments", "conversations", "conversation_members", "messages")


async def _columns(conn: asyncpg.Connection) -> dict[str, set[str]]:
    rows = await conn.fetch("SELECT table_name, column_name FROM information_schema.columns"
                            " WHERE table_schema = current_schema()")
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["table_name"], set()).add(r["column_name"])
    return out


async def _required(conn: asyncpg.Connection, table: str) -> set[str]:
    """Columns that must be given (NOT NULL, no default, not generated)."""
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = $1 AND is_nullable = 'NO' AND column_default IS NULL AND is_generated = 'NEVER'"
        " AND identity_generation IS NULL", table)
    return {r["column_name"] for r in rows}


async def reset(conn: asyncpg.Connection, redis_url: str | None = None) -> None:
    """Remove all users and what hangs off them, hashtags and locations; and the timelines and the
    explore ranking in Redis (a ranking of the removed posts would leave explore's pages empty)."""
    tables = (await _columns(conn)).keys()
    names = [t for t in ("users", "hashtags", "locations", "celebrities") if t in tables]
    await conn.execute(f"TRUNCATE {', '.join(names)} CASCADE")
    if redis_url:
        from redis.asyncio import Redis

        from storage import explore

        redis = Redis.from_url(redis_url)
        try:
            await redis.unlink(explore.KEY)
            batch = []
            async for key in redis.scan_iter(match="timeline:*", count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    await redis.unlink(*batch)
                    batch = []
            if batch:
                await redis.unlink(*batch)
        finally:
            await redis.aclose()


async def _copy(dsn: str, table: str, columns: Sequence[str], rows: list[tuple]) -> int:
    """COPY rows into a table over a connection of its own, in one transaction that drops the
    table's plain (non-unique) indexes first and builds them again after: building an index once
    is many times faster than growing it row by row (the GIN indexes of search above all). FK
    triggers are off: the rows are consistent by construction."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET maintenance_work_mem = '256MB'")
        try:
            await conn.execute("SET session_replication_role = replica")
        except asyncpg.InsufficientPrivilegeError:
            pass
        async with conn.transaction():
            indexes = await conn.fetch(
                "SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass"
                " AND NOT i.indisprimary AND NOT i.indisunique AND NOT i.indisexclusion", table)
            for index in indexes:
                await conn.execute(f'DROP INDEX "{index["name"]}"')
            await conn.copy_records_to_table(table, records=rows, columns=list(columns))
            for index in indexes:
                await conn.execute(index["definition"])
        return len(rows)
    finally:
        await conn.close()


def timeline_items(g: Graph, celebrity_threshold: int, cap: int) -> list[tuple[int, list[int]]]:
    """(user id, post ids newest first) of every active user's timeline, as a rebuild would make
    it: the user's own posts and those of followed non-celebrities, the newest `cap`."""
    items = []
    for u, active in enumerate(g.active):
        if not active:
            continue
        ids: list[int] = list(g.posts_by_author.get(u, ()))
        for v in g.following[u]:
            if g.followers_count[v] < celebrity_threshold:
                ids.extend(g.posts_by_author.get(v, ()))
        ids.sort(reverse=True)
        items.append((g.user_ids[u], ids[:cap]))
    return items


def store_timelines(redis_url: str, items: list[tuple[int, list[int]]], cap: int, batch: int = 500) -> int:
    """Write timelines with the key names, sentinel and TTL of storage.timelines (a whole
    timeline each, like Timelines.store_home), one pipeline per `batch` users. Synchronous: the
    seed runs it in a process of its own, so encoding millions of members does not stall the
    COPYs of the parent."""
    import inspect

    from redis import Redis

    from storage.timelines import SENTINEL, Timelines

    ttl = inspect.signature(Timelines).parameters["ttl_seconds"].default  # the TTL the server gives a timeline
    redis = Redis.from_url(redis_url, socket_timeout=300)
    try:
        for start in range(0, len(items), batch):
            pipe = redis.pipeline(transaction=False)
            for user_id, ids in items[start:start + batch]:
                key = Timelines.key(user_id)
                pipe.delete(key)
                pipe.zadd(key, {SENTINEL: 0, **{str(p): p for p in ids}})
                pipe.expire(key, ttl)
            pipe.execute()
    finally:
        redis.close()
    return len(items)


async def write_timelines(redis_url: str, g: Graph, celebrity_threshold: int, cap: int) -> int:
    """The timelines of every active user, written by a child process. Returns how many."""
    import concurrent.futures
    import multiprocessing

    items = timeline_items(g, celebrity_threshold, cap)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return await asyncio.wrap_future(pool.submit(store_timelines, redis_url, items, cap))


def manifest(g: Graph, plan: Plan, config: Any, now: datetime, sample: int = 20_000) -> dict[str, Any]:
    """What the scenarios need to know of the data: sample users (active ones: they have
    timelines), authors by follower count, celebrities, conversations, search terms."""
    rng = random.Random(plan.seed + 1)
    n = len(g.user_ids)
    active = [i for i in range(n) if g.active[i]] or list(range(n))
    users = [g.user_ids[i] for i in rng.sample(active, min(sample, len(active)))]
    everyone = [g.user_ids[i] for i in rng.sample(range(n), min(sample, n))]
    threshold = config.feed.celebrity_threshold
    by_followers = sorted(range(n), key=lambda i: g.followers_count[i])
    authors = []
    for want in (10, 100, 1000, 5000, threshold - 1):
        at = bisect.bisect_left([g.followers_count[i] for i in by_followers], want)
        for i in by_followers[max(0, at - 2):at + 3]:
            if g.followers_count[i] < threshold and g.user_ids[i] not in {a["id"] for a in authors}:
                authors.append({"id": g.user_ids[i], "followers": g.followers_count[i]})
    celebrities = [{"id": g.user_ids[i], "followers": g.followers_count[i]}
                   for i in sorted(range(n), key=lambda i: -g.followers_count[i]) if g.followers_count[i] >= threshold]
    conversations = [[cid, members] for cid, members in rng.sample(g.conversations, min(sample, len(g.conversations)))]
    terms = [USERNAME.format(rng.randrange(n))[:-1] for _ in range(20)] + rng.sample(FIRST, 10) + \
        rng.sample(g.hashtag_names, min(10, len(g.hashtag_names)))
    return {
        "format": 1,
        "seeded_at": now.isoformat(),
        "plan": asdict(plan),
        "password": PASSWORD,
        "username_format": USERNAME,
        "celebrity_threshold": threshold,
        "users": users,
        "any_users": everyone,
        "authors": sorted(authors, key=lambda a: a["followers"]),
        "celebrities": celebrities[:50],
        "conversations": conversations,
        "search_terms": terms,
        "hashtags": g.hashtag_names[:50],
    }


async def seed(config: Any, plan: Plan, manifest_path: Path, *, do_reset: bool = False,
               log: Callable[[str], None] = print) -> Seeded:
    """Seed the database (and Redis timelines) of `config`; write the manifest. Refuses a database
    that already has users unless `do_reset`."""
    report = Seeded()
    started = time.perf_counter()

    def step(name: str, since: float) -> float:
        now_ = time.perf_counter()
        report.seconds[name] = round(now_ - since, 2)
        log(f"  {name}: {now_ - since:.1f} s")
        return now_

    conn = await asyncpg.connect(config.database.url)
    try:
        columns = await _columns(conn)
        if "users" not in columns:
            raise RuntimeError("the database has no users table: run `glint migrate` first")
        if do_reset:
            await reset(conn, config.redis.url if plan.timelines else None)
        elif await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users)"):
            raise RuntimeError("the database already has users; seed an empty one or pass --reset")
        required = {t: await _required(conn, t) for t in SEEDED_TABLES if t in columns}
    finally:
        await conn.close()
    t = step("check", started)

    from handlers.auth import hash_password

    password_hash = await hash_password(PASSWORD)
    templates: list[dict[str, Any]] = []
    if "media" in columns and plan.images > 0:
        templates = await upload_images(config, make_images(plan.images))
        t = step("images", t)
    now = datetime.now(timezone.utc)
    g = await asyncio.to_thread(generate, plan, password_hash, templates, now, config.feed.celebrity_threshold)
    t = step("generate", t)

    loads = []
    for table, (cols, rows) in g.rows.items():
        if table not in columns:
            report.skipped.append(f"{table} (no such table yet)")
            continue
        if table in ("media", "post_media") and not templates:
            report.skipped.append(f"{table} (no images)")
            continue
        missing = required[table] - set(cols)
        if missing:
            report.skipped.append(f"{table} (needs columns the seeder does not know: {', '.join(sorted(missing))})")
            continue
        keep = [i for i, c in enumerate(cols) if c in columns[table]]
        if len(keep) < len(cols):
            rows = [tuple(r[i] for i in keep) for r in rows]
            cols = tuple(cols[i] for i in keep)
        loads.append((table, cols, rows))

    async def timelines() -> int:
        if not plan.timelines:
            return 0
        began = time.perf_counter()
        written = await write_timelines(config.redis.url, g, config.feed.celebrity_threshold, config.feed.cap)
        report.seconds["timelines"] = round(time.perf_counter() - began, 2)
        return written

    # the biggest tables first, each on its own connection: PostgreSQL builds indexes on one core
    # while this process encodes rows on the other
    loads.sort(key=lambda load: -len(load[2]))
    sem = asyncio.Semaphore(4)

    async def load(table: str, cols: Sequence[str], rows: list[tuple]) -> None:
        async with sem:
            began = time.perf_counter()
            report.counts[table] = await _copy(config.database.url, table, cols, rows)
            report.seconds[f"copy {table}"] = round(time.perf_counter() - began, 2)

    results = await asyncio.gather(timelines(), *(load(*x) for x in loads))
    report.counts["timelines"] = results[0]
    t = step("copy + timelines", t)
    conn = await asyncpg.connect(config.database.url)
    try:
        if "sessions" in columns:
            await open_seeded_sessions(conn)
        if "celebrities" in columns:  # the counts were copied, not moved by follows
            from storage import timelines as tl

            await tl.keep_celebrities(conn, config.feed.celebrity_threshold)
            await tl.list_celebrities(conn)
        await conn.execute("ANALYZE " + ", ".join(table for table, _, _ in loads))
    finally:
        await conn.close()
    t = step("analyze", t)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest(g, plan, config, now)) + "\n")
    report.total_seconds = round(time.perf_counter() - started, 2)
    return report
