"""Stories: one photo or video shown for exactly 24 hours; the tray of followed users' stories;
views once per viewer; reactions and replies that reach the owner as direct messages; close
friends; the owner's archive.

Expiry is decided by comparing expires_at with the app's clock (`clock_key`) in SQL, on every read
and on cached trays, so nothing expired is served whether or not a job has run.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Awaitable, Callable

import asyncpg
import msgspec
from aiohttp import web
from msgspec import Meta

import events
from handlers.auth import current_user
from handlers.common import (
    NotFound, Page, Routes, Struct, ValidationFailed, decode_cursor, encode_cursor, id_string_cursor, json_response,
    make_page, no_content, page_request, path_id, read_json,
)
from handlers.context import app_now, pool_key, tray_cache_key
from handlers.media import MediaOut, media_links, media_out
from handlers.messages import send_message
from handlers.posts import UserBrief, user_brief
from realtime.delivery import MessageWriter, writer_key
from realtime.frames import IdStr, Message, SendBody
from storage import media, outbox, stories
from storage import messages as message_store
from storage.bounds import is_blank, is_emoji

routes = Routes("stories")

CAPTION_MAX = 2200
CLOSE_FRIENDS_MAX = 10_000
PAGE_QUERY = {"limit": "page size, 1..100 (default 20)", "cursor": "from the previous page's `next`"}


# ---------------------------------------------------------------- bodies


class StoryCreate(Struct):
    media_id: IdStr
    caption: Annotated[str, Meta(max_length=CAPTION_MAX)] = ""
    close_friends_only: bool = False


class StoryOut(Struct):
    id: str
    owner_id: str
    media: MediaOut | None
    caption: str
    close_friends_only: bool
    created_at: datetime
    expires_at: datetime
    seen: bool
    view_count: int | None = None  # the owner's own stories only


class TrayEntry(Struct):
    user: UserBrief
    has_unseen: bool
    latest_at: datetime
    stories: list[StoryOut]


class StoryList(Struct):
    results: list[StoryOut]


class ViewerOut(Struct):
    user: UserBrief
    viewed_at: datetime


class ViewersPage(Struct):
    count: int
    results: list[ViewerOut]
    next: str | None


class ReactBody(Struct):
    emoji: Annotated[str, Meta(min_length=1, max_length=16)] | None = None
    text: Annotated[str, Meta(min_length=1, max_length=1000)] | None = None
    client_id: Annotated[str, Meta(min_length=1, max_length=40, description="makes a retry idempotent")] | None = None


class ReactionOut(Struct):
    story_id: str
    conversation_id: str
    message: Message


class CloseFriendsBody(Struct):
    user_ids: Annotated[list[IdStr], Meta(max_length=CLOSE_FRIENDS_MAX)]


# what the tray cache holds per viewer (media as the row's fields, signed when served)
class CachedStory(msgspec.Struct, kw_only=True):
    id: int
    media: dict[str, Any] | None
    caption: str
    close_friends_only: bool
    created_at: datetime
    expires_at: datetime
    seen: bool


class CachedOwner(msgspec.Struct, kw_only=True):
    id: int
    username: str
    full_name: str
    is_verified: bool
    stories: list[CachedStory]
    avatar: str | None = None  # SQL's avatar_key(); an entry cached before it had none shows none


_tray_encoder = msgspec.json.Encoder()
_tray_decoder = msgspec.json.Decoder(list[CachedOwner])
MEDIA_FIELDS = ("id", "kind", "content_type", "width", "height", "placeholder", "original_key", "renditions")


# ---------------------------------------------------------------- shapes


def story_out(request: web.Request, row: Any, media_row: Any, seen: bool, view_count: int | None = None) -> StoryOut:
    """A story as clients see it, its media URLs freshly signed."""
    return StoryOut(
        id=str(row["id"]), owner_id=str(row["owner_id"]),
        media=media_out(media_links(request), media_row) if media_row is not None else None,
        caption=row["caption"], close_friends_only=row["close_friends_only"], created_at=row["created_at"],
        expires_at=row["expires_at"], seen=seen, view_count=view_count,
    )


async def media_rows(pool: asyncpg.Pool, rows: list[Any]) -> dict[int, asyncpg.Record]:
    """The live media rows of these stories, by id."""
    return await media.get_media_many(pool, [r["media_id"] for r in rows if r["media_id"] is not None])


# ---------------------------------------------------------------- rules


async def visible_story(pool: asyncpg.Pool, viewer: int, story_id: int, now: datetime) -> asyncpg.Record:
    """A live story the viewer may see, or 404 (the policy's `story_visible_to`: the owner's own;
    otherwise blocks and private accounts as everywhere, and close-friends stories only to the
    owner's list)."""
    story = await stories.get_live_story(pool, viewer, story_id, now)
    if story is None:
        raise NotFound()
    return story


async def create_story(pool: asyncpg.Pool, trays: stories.TrayCache, now: datetime, owner: int,
                       body: StoryCreate) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Make a story of one of the owner's unused uploads, live for 24 hours; emits story_created;
    after commit, drops the trays of the owner and every follower."""
    async with pool.acquire() as conn, conn.transaction():
        story = await stories.create_story_txn(conn, owner, int(body.media_id), body.caption,
                                               body.close_friends_only, now)
        if story is None:
            raise ValidationFailed("media_id: not your unused upload.", fields={"media_id": "Not your unused upload."})
        await outbox.add(conn, events.StoryCreated(story_id=str(story["id"]), owner_id=str(owner),
                                                 close_friends_only=story["close_friends_only"],
                                                 expires_at=story["expires_at"]), owner)
    await trays.drop([owner, *await stories.follower_ids(pool, owner)])
    return story, await media.get_media(pool, story["media_id"])


async def delete_story(pool: asyncpg.Pool, trays: stories.TrayCache, now: datetime, owner: int, story_id: int) -> None:
    """The owner deletes a story (live or archived); its media is retired; emits story_deleted;
    trays are dropped."""
    async with pool.acquire() as conn, conn.transaction():
        if await stories.delete_story_txn(conn, story_id, owner, now) is None:
            raise NotFound()
        await outbox.add(conn, events.StoryDeleted(story_id=str(story_id), owner_id=str(owner)), owner)
    await trays.drop([owner, *await stories.follower_ids(pool, owner)])


async def view_story(pool: asyncpg.Pool, trays: stories.TrayCache, now: datetime, viewer: int, story_id: int) -> None:
    """Record the viewer's view once; the owner's own views are not recorded."""
    story = await visible_story(pool, viewer, story_id, now)
    if story["owner_id"] != viewer and await stories.record_view(pool, story_id, viewer, now):
        await trays.drop([viewer])


async def react_to_story(pool: asyncpg.Pool, writer: MessageWriter, now: datetime, sender: int, story_id: int,
                         body: ReactBody) -> ReactionOut:
    """An emoji or a text reply to a story the sender may see: a direct message to the owner in
    their 1:1 conversation, linked to the story, and a story_reaction event. A retry with the same
    client_id finds the same message and emits nothing more."""
    if (body.emoji is None) == (body.text is None):
        raise ValidationFailed("Send either emoji or text.", fields={"emoji": "Send either emoji or text."})
    kind, content = ("emoji", body.emoji) if body.emoji is not None else ("text", body.text)
    if is_blank(content):
        raise ValidationFailed(f"{kind} is blank.", fields={kind: "Blank."})
    if kind == "emoji" and not is_emoji(content):
        raise ValidationFailed("emoji: one emoji.", fields={"emoji": "React with one emoji."})
    story = await visible_story(pool, sender, story_id, now)
    owner = story["owner_id"]
    if owner == sender:
        raise ValidationFailed("You cannot react to your own story.", fields={kind: "Your own story."})
    conversation_id, _ = await message_store.get_or_create_direct(pool, sender, owner)
    client_id = f"story:{story_id}:{body.client_id or uuid.uuid4().hex}"
    message, _ = await send_message(pool, writer, sender, conversation_id,
                                    SendBody(client_id=client_id, text=content))
    async with pool.acquire() as conn, conn.transaction():
        if await stories.record_reply_txn(conn, int(message.id), conversation_id, story_id, sender, kind, now):
            await outbox.add(conn, events.StoryReaction(
                story_id=str(story_id), owner_id=str(owner), actor_id=str(sender), kind=kind, emoji=body.emoji,
                text=body.text, conversation_id=str(conversation_id), message_id=message.id), owner)
    return ReactionOut(story_id=str(story_id), conversation_id=str(conversation_id), message=message)


async def build_tray(pool: asyncpg.Pool, viewer: int, now: datetime) -> list[CachedOwner]:
    """The viewer's tray from PostgreSQL: every visible owner with live stories, oldest first."""
    rows = await stories.tray_rows(pool, viewer, now)
    media_by_id = await media_rows(pool, rows)
    owners: dict[int, CachedOwner] = {}
    for r in rows:
        owner = owners.get(r["owner_id"])
        if owner is None:
            owner = owners[r["owner_id"]] = CachedOwner(id=r["owner_id"], username=r["username"],
                                                        full_name=r["full_name"], is_verified=r["is_verified"],
                                                        stories=[], avatar=r["avatar_key"])
        m = media_by_id.get(r["media_id"])
        owner.stories.append(CachedStory(
            id=r["id"], media={f: m[f] for f in MEDIA_FIELDS} if m is not None else None, caption=r["caption"],
            close_friends_only=r["close_friends_only"], created_at=r["created_at"], expires_at=r["expires_at"],
            seen=r["seen"],
        ))
    return list(owners.values())


async def get_tray(pool: asyncpg.Pool, trays: stories.TrayCache, now: datetime, viewer: int) -> list[CachedOwner]:
    """The viewer's tray, cached per viewer: the viewer first, then owners with unseen stories,
    then by latest story. A cached tray is re-checked against the clock and the graph, so an
    expired story, an unfollowed or a blocking owner never shows from the cache."""
    cached = await trays.read(viewer)
    if cached is None:
        owners = await build_tray(pool, viewer, now)
        await trays.store(viewer, _tray_encoder.encode(owners))
    else:
        owners = _tray_decoder.decode(cached)
        allowed = await stories.still_in_tray(pool, viewer, [o.id for o in owners])
        owners = [o for o in owners if o.id in allowed]
    for owner in owners:
        owner.stories = [s for s in owner.stories if s.expires_at > now]
    owners = [o for o in owners if o.stories]
    owners.sort(key=lambda o: (o.id != viewer, all(s.seen for s in o.stories),
                               -max(s.created_at for s in o.stories).timestamp(), -max(s.id for s in o.stories)))
    return owners


def tray_entry(request: web.Request, viewer: int, owner: CachedOwner) -> TrayEntry:
    own = owner.id == viewer
    return TrayEntry(
        user=UserBrief(id=str(owner.id), username=owner.username, full_name=owner.full_name,
                       is_verified=owner.is_verified, avatar_url=media_links(request).avatar(owner.avatar)),
        has_unseen=not own and not all(s.seen for s in owner.stories),
        latest_at=max(s.created_at for s in owner.stories),
        stories=[StoryOut(id=str(s.id), owner_id=str(owner.id),
                          media=media_out(media_links(request), s.media) if s.media is not None else None,
                          caption=s.caption, close_friends_only=s.close_friends_only, created_at=s.created_at,
                          expires_at=s.expires_at, seen=s.seen or own)
                 for s in owner.stories],
    )


async def set_close_friends(pool: asyncpg.Pool, trays: stories.TrayCache, owner: int, body: CloseFriendsBody) -> None:
    """Replace the owner's close-friends list; unknown, blocked or own ids are 400 and change
    nothing. The trays of everyone added or removed are dropped."""
    ids = list(dict.fromkeys(int(u) for u in body.user_ids))
    unknown = set(ids) - await stories.eligible_friends(pool, owner, ids)
    if unknown:
        raise ValidationFailed("user_ids: unknown users.",
                               fields={"user_ids": "Unknown: " + ", ".join(str(u) for u in sorted(unknown))})
    async with pool.acquire() as conn, conn.transaction():
        changed = await stories.replace_close_friends_txn(conn, owner, ids)
    await trays.drop(changed)


StoryAct = Callable[[asyncpg.Pool, stories.TrayCache, datetime, int, int], Awaitable[None]]


async def _on_story(request: web.Request, act: StoryAct) -> web.Response:
    """What a route answers after `act` (view_story, delete_story) is done by the signed-in
    account on the story in the path: 204."""
    await act(request.app[pool_key], request.app[tray_cache_key], app_now(request.app), current_user(request),
              path_id(request))
    return no_content()


# ---------------------------------------------------------------- routes (fixed paths before {id})


@routes.route("POST", "/api/stories/", body=StoryCreate, response=StoryOut, status=201)
async def post_story(request: web.Request) -> web.Response:
    """Share a story: one of your uploads, live for exactly 24 hours."""
    owner = current_user(request)
    body = await read_json(request, StoryCreate)
    story, media_row = await create_story(request.app[pool_key], request.app[tray_cache_key], app_now(request.app),
                                          owner, body)
    return json_response(story_out(request, story, media_row, True, 0), status=201)


@routes.route("GET", "/api/stories/", response=StoryList)
async def own_stories(request: web.Request) -> web.Response:
    """Your live stories, oldest first, with their view counts."""
    owner = current_user(request)
    pool = request.app[pool_key]
    rows = await stories.own_live_stories(pool, owner, app_now(request.app))
    media_by_id = await media_rows(pool, rows)
    return json_response(StoryList(results=[story_out(request, r, media_by_id.get(r["media_id"]), True,
                                                      r["viewer_count"]) for r in rows]))


@routes.route("GET", "/api/stories/feed/", response=Page[TrayEntry], query=PAGE_QUERY)
async def story_tray(request: web.Request) -> web.Response:
    """The tray: yours first, then followed users with unseen stories, then by their latest story."""
    viewer = current_user(request)
    page = page_request(request)
    cursor = decode_cursor(page.cursor, int)
    start = cursor[0] if cursor is not None else 0
    owners = await get_tray(request.app[pool_key], request.app[tray_cache_key], app_now(request.app), viewer)
    window = owners[start:start + page.limit + 1]
    entries = [(start + i, tray_entry(request, viewer, o)) for i, o in enumerate(window)]
    result = make_page(request, entries, page.limit, lambda item: encode_cursor(item[0] + 1))
    return json_response(Page(results=[e for _, e in result.results], next=result.next))


@routes.route("GET", "/api/stories/archive/", response=Page[StoryOut], query=PAGE_QUERY)
async def story_archive(request: web.Request) -> web.Response:
    """Your expired stories, newest first (media is removed an hour after expiry)."""
    owner = current_user(request)
    page = page_request(request)
    before = id_string_cursor(page.cursor)
    pool = request.app[pool_key]
    rows = await stories.list_archive(pool, owner, before, page.limit)
    media_by_id = await media_rows(pool, rows)
    items = [story_out(request, r, media_by_id.get(r["media_id"]), True, r["view_count"]) for r in rows]
    return json_response(make_page(request, items, page.limit, lambda s: encode_cursor(s.id)))


@routes.route("GET", "/api/accounts/close-friends/", response=Page[UserBrief], query=PAGE_QUERY)
async def get_close_friends(request: web.Request) -> web.Response:
    """Your close-friends list: who sees your close-friends stories."""
    owner = current_user(request)
    page = page_request(request)
    after = id_string_cursor(page.cursor)
    rows = await stories.list_close_friends(request.app[pool_key], owner, after, page.limit)
    return json_response(make_page(request, [user_brief(media_links(request), r) for r in rows], page.limit, lambda u: encode_cursor(u.id)))


@routes.route("PUT", "/api/accounts/close-friends/", body=CloseFriendsBody, status=204)
async def put_close_friends(request: web.Request) -> web.Response:
    """Replace your close-friends list with these users."""
    owner = current_user(request)
    body = await read_json(request, CloseFriendsBody)
    await set_close_friends(request.app[pool_key], request.app[tray_cache_key], owner, body)
    return no_content()


@routes.route("POST", "/api/stories/{id}/view/", sees="audience", status=204)
async def post_view(request: web.Request) -> web.Response:
    """Record that you saw a story (once; repeats change nothing)."""
    return await _on_story(request, view_story)


@routes.route("GET", "/api/stories/{id}/viewers/", sees="owner", response=ViewersPage, query=PAGE_QUERY)
async def story_viewers(request: web.Request) -> web.Response:
    """Who saw your story, latest first, and how many (the owner only)."""
    owner = current_user(request)
    story_id = path_id(request)
    page = page_request(request)
    before = id_string_cursor(page.cursor)
    pool = request.app[pool_key]
    if await stories.get_own_story(pool, story_id, owner) is None:
        raise NotFound()
    rows = await stories.list_viewers(pool, story_id, before, page.limit)
    items = [(r["view_id"], ViewerOut(user=user_brief(media_links(request), r), viewed_at=r["viewed_at"])) for r in rows]
    result = make_page(request, items, page.limit, lambda item: encode_cursor(str(item[0])))
    return json_response(ViewersPage(count=await stories.count_viewers(pool, story_id),
                                     results=[v for _, v in result.results], next=result.next))


@routes.route("POST", "/api/stories/{id}/react/", sees="audience", body=ReactBody, response=ReactionOut, status=201)
async def react(request: web.Request) -> web.Response:
    """React with an emoji or reply with text: it reaches the owner as a direct message."""
    sender = current_user(request)
    body = await read_json(request, ReactBody)
    reaction = await react_to_story(request.app[pool_key], request.app[writer_key], app_now(request.app), sender,
                                    path_id(request), body)
    return json_response(reaction, status=201)


@routes.route("DELETE", "/api/stories/{id}/", sees="owner", status=204)
async def remove_story(request: web.Request) -> web.Response:
    """Delete your story."""
    return await _on_story(request, delete_story)
