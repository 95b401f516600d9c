"""Posts: create, read, edit the caption, delete; likes and saves.

Routes with fixed paths under /api/posts/ (saved/ here, feed/ and explore/ in handlers/feed.py)
must be registered before /api/posts/{id}/, which would otherwise take them (and answer 404).

render_live() is how a page of posts (an author's, the saved list, the home feed, explore) becomes
JSON for a viewer: the query that picked the page also read each post's counts, flags and
visibility (storage.posts.LIVE_COLUMNS), and the rest comes from the post cache; render_posts()
does the same for posts named by id.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Annotated, Any, Awaitable, Callable, Mapping

import asyncpg
import msgspec
from aiohttp import web
from msgspec import Meta
from redis.asyncio import Redis

import events
from handlers.auth import Identity, current_user, first_read, ridden
from handlers.common import (
    Handler, IdIn, NotFound, Page, Routes, Struct, ValidationFailed, decode_cursor, encode_cursor, json_response, make_page,
    no_content, page_request, parse_id, path_id, query_id, read_json, read_pool,
)
from handlers.context import config_key, pool_key, redis_key, s3_key
from handlers.media import AVATAR_URL_DOC, MediaOut, MediaStatic, media_fields, media_links
from storage import media, outbox, posts, users, visibility
from storage.bounds import is_blank
from storage.cluster import is_cluster
from storage.ratelimit import Rider

log = logging.getLogger("glint.posts")

routes = Routes("posts")

CAPTION_MAX = 2200
HASHTAG = re.compile(r"(?<![\w#&])#(\w{1,100})")
Coordinate = Annotated[float, Meta(ge=-180, le=180)]


# ---------------------------------------------------------------- bodies


class LocationIn(Struct):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    lat: Annotated[float, Meta(ge=-90, le=90)] | None = None
    lng: Coordinate | None = None


class PostCreate(Struct):
    media_ids: Annotated[list[IdIn], Meta(min_length=1, max_length=10, description="1 to 10 media ids")]
    caption: Annotated[str, Meta(max_length=CAPTION_MAX)] = ""
    location: LocationIn | None = None


class PostPatch(Struct):
    caption: Annotated[str, Meta(max_length=CAPTION_MAX)]


class UserBrief(Struct):
    id: str
    username: str
    full_name: str
    is_verified: bool
    avatar_url: Annotated[str | None, Meta(description=AVATAR_URL_DOC)] = None


class LocationOut(Struct):
    id: str
    name: str
    lat: float | None
    lng: float | None


class PostOut(Struct):
    id: str
    author: UserBrief
    caption: str
    media: list[MediaOut]
    hashtags: list[str]
    location: LocationOut | None
    like_count: int
    comment_count: int
    liked: bool
    saved: bool
    created_at: datetime
    edited_at: datetime | None


class LikeState(Struct):
    liked: bool
    like_count: int


class SaveState(Struct):
    saved: bool


# ---------------------------------------------------------------- rules


def parse_caption(caption: str) -> tuple[list[str], list[str]]:
    """(#hashtags lower-cased, @usernames) named in a caption, each once, in order."""
    tags = list(dict.fromkeys(t.lower() for t in HASHTAG.findall(caption)))
    return tags, users.mentioned_usernames(caption)


async def create_post(pool: asyncpg.Pool, author_id: int, body: PostCreate) -> int:
    """Create a post with its media, location, hashtags and mentions; emits post_created and a
    mention_created per mentioned user in the same transaction."""
    media_ids = [parse_id(str(m), "media_ids") for m in body.media_ids]
    if len(set(media_ids)) != len(media_ids):
        raise ValidationFailed("media_ids repeats an id.", fields={"media_ids": "Repeated id."})
    if body.location is not None and is_blank(body.location.name):
        raise ValidationFailed("location.name is blank.", fields={"location.name": "Name the place."})
    tags, names = parse_caption(body.caption)
    async with pool.acquire() as conn, conn.transaction():
        location_id = None
        if body.location is not None:
            location_id = await posts.get_or_create_location_txn(conn, body.location.name.strip(), body.location.lat,
                                                                 body.location.lng)
        try:
            post = await posts.create_post_txn(conn, author_id, body.caption, media_ids, location_id)
        except posts.MediaUnavailable as exc:
            raise ValidationFailed("Some media are not yours, are used already, or do not exist.",
                                   fields={"media_ids": ", ".join(map(str, exc.ids))}) from None
        await posts.set_hashtags_txn(conn, post["id"], tags)
        mentioned = await posts.set_mentions_txn(conn, post["id"], author_id, names)
        await emit_txn(conn, events.PostCreated, post, hashtags=tags, media_ids=[str(m) for m in media_ids])
        for user_id in mentioned:
            await emit_txn(conn, events.MentionCreated, post, user_id=str(user_id))
    return post["id"]


async def edit_caption(pool: asyncpg.Pool, redis: Redis, author_id: int, post_id: int, caption: str) -> None:
    """Replace a post's caption (and so its hashtags and mentions); 404 unless it is the author's."""
    tags, names = parse_caption(caption)
    async with pool.acquire() as conn, conn.transaction():
        post = await posts.update_caption_txn(conn, post_id, author_id, caption)
        if post is None:
            raise NotFound()
        await posts.set_hashtags_txn(conn, post_id, tags)
        mentioned = await posts.set_mentions_txn(conn, post_id, author_id, names)
        await emit_txn(conn, events.PostUpdated, post, hashtags=tags)
        for user_id in mentioned:
            await emit_txn(conn, events.MentionCreated, post, user_id=str(user_id))
    await posts.forget_cached(redis, [post_id])


async def delete_post(pool: asyncpg.Pool, redis: Redis, s3: Any, bucket: str, author_id: int, post_id: int) -> None:
    """Delete the author's post: gone from every list and count at once, and its media objects
    from S3 right after the commit, so links already handed out stop working; emits post_deleted.
    (Should that removal fail, the media job removes the retired objects later.)"""
    async with pool.acquire() as conn, conn.transaction():
        deleted = await posts.delete_post_txn(conn, post_id, author_id)
        if deleted is None:
            raise NotFound()
        await emit_txn(conn, events.PostDeleted, deleted.row)
    await posts.forget_cached(redis, [post_id])
    await remove_post_objects(s3, bucket, post_id, deleted.object_keys)


async def remove_post_objects(s3: Any, bucket: str, post_id: int, object_keys: list[str]) -> None:
    """After a post's deletion commits: its media objects leave S3 at once, so links already
    handed out stop working (should that fail, the media job removes the retired objects later)."""
    try:
        await media.delete_objects(s3, bucket, object_keys)
    except Exception:
        log.warning("removing the objects of deleted post %s failed; the media job will", post_id, exc_info=True)


async def emit_txn(conn: asyncpg.Connection, kind: type[events.PostEvent], post: asyncpg.Record,
                   **extra: object) -> None:
    """A post event of this kind, keyed by the post's author so one author's events stay in order."""
    await outbox.add(conn, kind(post_id=str(post["id"]), author_id=str(post["author_id"]),
                                created_at=post["created_at"], **extra), post["author_id"])


async def visible_post(pool: asyncpg.Pool, viewer: int, post_id: int) -> asyncpg.Record:
    """The post, if the viewer may see it; 404 otherwise."""
    post = await posts.get_post(pool, post_id)
    if post is None or not await visibility.can_see(pool, viewer, post["author_id"]):
        raise NotFound()
    return post


async def set_like(pool: asyncpg.Pool, viewer: int, post_id: int, liked: bool) -> LikeState:
    """Like or unlike, idempotently; an event only when something changed."""
    post = await visible_post(pool, viewer, post_id)
    async with pool.acquire() as conn, conn.transaction():
        try:
            changed = await (posts.like_txn if liked else posts.unlike_txn)(conn, post_id, viewer)
        except asyncpg.ForeignKeyViolationError:  # deleted meanwhile
            raise NotFound() from None
        if changed:
            await emit_txn(conn, events.PostLiked if liked else events.PostUnliked, post, user_id=str(viewer))
        count = await conn.fetchval("SELECT like_count FROM posts WHERE id = $1", post_id)
    if count is None:
        raise NotFound()
    return LikeState(liked=liked, like_count=count)


SetLike = Callable[[asyncpg.Pool, int, int, bool], Awaitable[LikeState]]


def like_routes(routes: Routes, path: str, set_like: SetLike, like_doc: str, unlike_doc: str) -> tuple[Handler, Handler]:
    """POST {path}like/ and {path}unlike/ (`path` names a post or a comment by {id}): the signed-in
    account likes it or takes the like back, idempotently, through `set_like`, and gets the
    LikeState. The handlers are `like` and `unlike` with these docstrings (the OpenAPI summaries)."""

    def route(liked: bool, doc: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return json_response(await set_like(request.app[pool_key], current_user(request), path_id(request), liked))

        handler.__name__ = handler.__qualname__ = "like" if liked else "unlike"
        handler.__doc__ = doc
        return routes.route("POST", f"{path}{handler.__name__}/", sees="audience", response=LikeState)(handler)

    return route(True, like_doc), route(False, unlike_doc)


# ---------------------------------------------------------------- rendering


def user_brief(links: media.MediaLinks, row: asyncpg.Record, id_field: str = "id") -> UserBrief:
    """A user as lists show them (the row's `avatar_key`: SQL's avatar_key(), migration 0023)."""
    return UserBrief(id=str(row[id_field]), username=row["username"], full_name=row["full_name"],
                     is_verified=row["is_verified"], avatar_url=links.avatar(row["avatar_key"]))


class PostHead(Struct):
    """What every viewer sees of a post but its media: encoded once into the post cache."""

    id: str
    author: UserBrief
    caption: str
    hashtags: list[str]
    location: LocationOut | None
    created_at: datetime
    edited_at: datetime | None


class CachedMedia(msgspec.Struct, array_like=True):
    folder: str  # where its files are in S3 (storage.media.media_folder): what its link signs
    kind: str
    body: msgspec.Raw  # MediaStatic's JSON


class CachedPost(msgspec.Struct, array_like=True):
    """A post cache entry: the media, and the rest of the post's JSON, all pre-encoded, so a page
    splices bytes instead of building objects."""

    media: list[CachedMedia]
    head: msgspec.Raw  # PostHead's JSON, its author's avatar_url null
    avatar: str | None  # the author's avatar file (SQL's avatar_key()): what static_part links


_encode = msgspec.json.Encoder().encode
decode_cached_post = msgspec.json.Decoder(CachedPost).decode


def cache_entry(row: asyncpg.Record) -> bytes:
    """The post cache's bytes for a post row (storage.posts.cached_posts)."""
    location = None
    if row["location_id"] is not None:
        location = LocationOut(id=str(row["location_id"]), name=row["location_name"], lat=row["lat"], lng=row["lng"])
    head = PostHead(id=str(row["id"]), author=UserBrief(id=str(row["author_id"]), username=row["username"],
                                                        full_name=row["full_name"], is_verified=row["is_verified"]),
                    caption=row["caption"], hashtags=list(row["hashtags"]), location=location,
                    created_at=row["created_at"], edited_at=row["edited_at"])
    media_ = [CachedMedia(folder=media.media_folder(m), kind=m["kind"],
                          body=msgspec.Raw(_encode(MediaStatic(**media_fields(m))))) for m in row["media"]]
    return _encode(CachedPost(media=media_, head=msgspec.Raw(_encode(head)), avatar=row["avatar_key"]))


def post_body(links: media.MediaLinks, post: CachedPost, now: Mapping[str, Any], expires: int) -> msgspec.Raw:
    """A PostOut's JSON from a cache entry and the live part: the pre-encoded bytes with each
    media item's link (one MD5, memoized for its window) and the counts and flags spliced in."""
    return live_part(static_part(links, post, expires), now)


_NO_AVATAR = b'"avatar_url":null'


def static_part(links: media.MediaLinks, post: CachedPost, expires: int) -> bytes:
    """A PostOut's JSON up to its live part: the cache entry's bytes with each media item's link,
    and the author's avatar link in place of the null the head was encoded with (the first such
    key: the author comes before the caption, and a string's quotes are escaped)."""
    items = b",".join(b'{"url":%s,%s' % (_encode(links.folder(m.folder, m.kind, expires=expires)),
                                         bytes(m.body)[1:]) for m in post.media)
    head = bytes(post.head)[:-1]
    if post.avatar is not None:
        head = head.replace(_NO_AVATAR, b'"avatar_url":%s' % _encode(links.avatar(post.avatar, expires)), 1)
    return b'%s,"media":[%s]' % (head, items)


def live_part(static: bytes, now: Mapping[str, Any]) -> msgspec.Raw:
    """A PostOut's JSON: its static part (static_part) with the counts and flags spliced in."""
    return msgspec.Raw(b'%s,"like_count":%d,"comment_count":%d,"liked":%s,"saved":%s}' % (
        static, now["like_count"], now["comment_count"], b"true" if now["liked"] else b"false",
        b"true" if now["saved"] else b"false"))


_statics: dict[tuple[bytes, media.MediaLinks, int], bytes] = {}
STATICS_MAX = 8192  # static parts remembered per process (each about 1.5 KB with its key)


def static_of(links: media.MediaLinks, expires: int) -> Callable[[bytes], bytes]:
    """The decode for posts.cached_posts that makes a cache entry's static part (static_part) at
    once: remembered by the entry's bytes, so a post on many pages is decoded and linked once per
    link window (an edited post has new bytes, hence a new entry)."""
    def decode(raw: bytes) -> bytes:
        key = (raw, links, expires)
        static = _statics.get(key)
        if static is None:
            static = static_part(links, decode_cached_post(raw), expires)  # an entry of an older form raises
            if len(_statics) >= STATICS_MAX:
                del _statics[next(iter(_statics))]  # the oldest remembered
            _statics[key] = static
        return static
    return decode


async def post_bodies(request: web.Request, viewer: int, post_ids: list[int]) -> dict[int, msgspec.Raw]:
    """The JSON (PostOut) of each post the viewer may see, by id; deleted and hidden ones are left
    out. One query for counts, the viewer's flags and visibility, then live_bodies."""
    live = await posts.live_posts(await read_pool(request), viewer, post_ids)
    return await live_bodies(request, live, post_ids)


async def live_bodies(request: web.Request, live: Mapping[int, Mapping[str, Any]], post_ids: list[int],
                      cached: Mapping[int, bytes | None] | None = None) -> dict[int, msgspec.Raw]:
    """The JSON (PostOut) of each of `post_ids` that has a live part (storage.posts.LIVE_COLUMNS,
    read by whatever query picked the page), by id: one Redis MGET for what every viewer sees (the
    misses in one query, then cached), but for the cache entries already read (`cached`)."""
    # cache misses are filled from the primary, so a lagging replica never caches stale content
    links = media_links(request)
    static = await posts.cached_posts(request.app[pool_key], request.app[redis_key], [i for i in post_ids if i in live],
                                      cache_entry, static_of(links, links.expires()), cached)
    return {post_id: live_part(p, live[post_id]) for post_id, p in static.items()}


async def render_posts(request: web.Request, viewer: int, post_ids: list[int]) -> list[msgspec.Raw]:
    """The posts the viewer may see (post_bodies), in the order given: JSON a Page splices in."""
    bodies = await post_bodies(request, viewer, post_ids)
    return [bodies[i] for i in post_ids if i in bodies]


async def render_live(request: web.Request, live: Mapping[int, Mapping[str, Any]], post_ids: list[int],
                      cached: Mapping[int, bytes | None] | None = None) -> list[msgspec.Raw]:
    """The posts of `post_ids` that have a live part (live_bodies), in the order given."""
    bodies = await live_bodies(request, live, post_ids, cached)
    return [bodies[i] for i in post_ids if i in bodies]


async def render_post(request: web.Request, viewer: int, post_id: int) -> msgspec.Raw:
    """One post for the viewer, or 404."""
    rendered = await render_posts(request, viewer, [post_id])
    if not rendered:
        raise NotFound()
    return rendered[0]


def cursor_id(request: web.Request, cursor: str | None) -> int | None:
    """The id inside a one-id cursor."""
    parts = decode_cursor(cursor, int)
    return None if parts is None else parts[0]


# ---------------------------------------------------------------- routes


@routes.route("POST", "/api/posts/", body=PostCreate, response=PostOut, status=201)
async def create(request: web.Request) -> web.Response:
    """Create a post from 1-10 uploaded media, a caption and an optional location."""
    viewer = current_user(request)
    body = await read_json(request, PostCreate)
    post_id = await create_post(request.app[pool_key], viewer, body)
    return json_response(await render_post(request, viewer, post_id), status=201)


# Pages whose posts come out of a PostgreSQL query (an author's, the saved list) cannot read their
# cache entries in the rate limit's script as the feed does, not knowing them yet. The posts a page
# showed when this process last served it are the guess instead: their entries ride in the script
# call (storage.posts.entries_rider), so a page that shows the same posts again needs no MGET, and
# one that does not reads the others as before. Only what the query returns for this viewer is
# used; a guess only saves a round trip.
_shown: dict[tuple[str, int, int | None, int], list[int]] = {}
SHOWN_MAX = 8192  # pages remembered per process, each a key and up to a page of ids


def page_place(request: web.Request, kind: str, owner: int) -> tuple[str, int, int | None, int]:
    """Which page a request reads: its list's kind and owner (the author, or the saved list's
    viewer), cursor and size."""
    page = page_request(request)
    return kind, owner, cursor_id(request, page.cursor), page.limit


def shown_before(kind: str, owner_of: Callable[[web.Request, int], int]) -> Callable[[web.Request, Identity], Rider | None]:
    """The first read (handlers.auth.first_read) of a page list: the cache entries of the posts
    its page showed last time (remember_shown), on one Redis node."""
    def read(request: web.Request, identity: Identity) -> Rider | None:
        if is_cluster(request.app[redis_key]):
            return None
        ids = _shown.get(page_place(request, kind, owner_of(request, identity.user_id)))
        return posts.entries_rider(ids) if ids else None
    return read


def remember_shown(place: tuple[str, int, int | None, int], post_ids: list[int]) -> None:
    """Remember the posts a page showed, as the next read of it guesses them (shown_before)."""
    if _shown.get(place) != post_ids:
        if place not in _shown and len(_shown) >= SHOWN_MAX:
            del _shown[next(iter(_shown))]  # the oldest remembered
        _shown[place] = post_ids


def ridden_entries(request: web.Request) -> dict[int, bytes | None] | None:
    """The cache entries a shown_before read found, if it was made."""
    read = ridden(request)
    return None if read is None else posts.ridden_entries_of(read)


def author_of(request: web.Request, viewer: int) -> int:
    """The author whose posts the request lists: ?author=, or the viewer."""
    return query_id(request, "author") or viewer


@routes.route("GET", "/api/posts/", sees="audience", response=Page[PostOut], query={"author": "user id (default: the viewer)"})
@first_read(shown_before("author", author_of))
async def list_by_author(request: web.Request) -> web.Response:
    """An author's posts, newest first."""
    viewer = current_user(request)
    author = author_of(request, viewer)
    page = page_request(request)
    pool = request.app[pool_key]
    found = await posts.author_page(pool, viewer, author, cursor_id(request, page.cursor), page.limit + 1)
    if not found.ids and not await visibility.can_see(pool, viewer, author):  # hidden, or just no posts?
        raise NotFound()
    shown = make_page(request, found.ids, page.limit, encode_cursor)
    results = await render_live(request, found.live, shown.results, ridden_entries(request))
    remember_shown(page_place(request, "author", author), shown.results)
    return json_response(Page(results=results, next=shown.next))


@routes.route("GET", "/api/posts/saved/", response=Page[PostOut])
@first_read(shown_before("saved", lambda request, viewer: viewer))
async def list_saved(request: web.Request) -> web.Response:
    """The viewer's saved posts, most recently saved first."""
    viewer = current_user(request)
    page = page_request(request)
    saved, live = await posts.saved_page(request.app[pool_key], viewer, cursor_id(request, page.cursor), page.limit + 1)
    shown = make_page(request, saved, page.limit, lambda s: encode_cursor(s[0]))
    post_ids = [post_id for _, post_id in shown.results]
    rendered = await render_live(request, live, post_ids, ridden_entries(request))
    remember_shown(page_place(request, "saved", viewer), post_ids)
    return json_response(Page(results=rendered, next=shown.next))


@routes.route("GET", "/api/posts/{id}/", sees="audience", response=PostOut)
async def get(request: web.Request) -> web.Response:
    """A post with its media, hashtags, location, counts and the viewer's liked/saved flags."""
    return json_response(await render_post(request, current_user(request), path_id(request)))


@routes.route("PATCH", "/api/posts/{id}/", sees="owner", body=PostPatch, response=PostOut)
async def patch(request: web.Request) -> web.Response:
    """Edit the caption of one's own post."""
    viewer = current_user(request)
    body = await read_json(request, PostPatch)
    await edit_caption(request.app[pool_key], request.app[redis_key], viewer, path_id(request), body.caption)
    return json_response(await render_post(request, viewer, path_id(request)))


@routes.route("DELETE", "/api/posts/{id}/", sees="owner", status=204)
async def delete(request: web.Request) -> web.Response:
    """Delete one's own post."""
    await delete_post(request.app[pool_key], request.app[redis_key], request.app[s3_key],
                      request.app[config_key].s3.bucket, current_user(request), path_id(request))
    return no_content()


like, unlike = like_routes(routes, "/api/posts/{id}/", set_like, "Like a post (idempotent).",
                           "Take back a like (idempotent).")


@routes.route("GET", "/api/posts/{id}/likes/", sees="audience", response=Page[UserBrief])
async def list_likes(request: web.Request) -> web.Response:
    """Who liked a post, most recent first."""
    viewer = current_user(request)
    pool = request.app[pool_key]
    post = await visible_post(pool, viewer, path_id(request))
    page = page_request(request)
    rows = await posts.likers(pool, post["id"], cursor_id(request, page.cursor), page.limit + 1)
    shown = await visibility.shown_users(pool, viewer, [r["id"] for r in rows])
    page_rows = make_page(request, rows, page.limit, lambda r: encode_cursor(r["like_id"]))
    links = media_links(request)
    return json_response(Page(results=[user_brief(links, r) for r in page_rows.results if r["id"] in shown],
                              next=page_rows.next))


@routes.route("POST", "/api/posts/{id}/save/", sees="audience", response=SaveState)
async def save(request: web.Request) -> web.Response:
    """Save a post for later (idempotent)."""
    viewer = current_user(request)
    pool = request.app[pool_key]
    post = await visible_post(pool, viewer, path_id(request))
    try:
        await posts.save(pool, post["id"], viewer)
    except asyncpg.ForeignKeyViolationError:
        raise NotFound() from None
    return json_response(SaveState(saved=True))


@routes.route("POST", "/api/posts/{id}/unsave/", sees="self", response=SaveState)
async def unsave(request: web.Request) -> web.Response:
    """Remove a post from the saved ones (idempotent)."""
    viewer = current_user(request)
    post_id = path_id(request)
    await posts.unsave(request.app[pool_key], post_id, viewer)
    return json_response(SaveState(saved=False))
