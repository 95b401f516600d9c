"""Conversations over REST: the viewer's list (inbox and requests folders), start (a 1:1 or a
group), detail, settings (mute, pin, a group's title), accepting or declining a request, and a
group's members. Their messages are handlers/messages.py's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
from aiohttp import web
from msgspec import UNSET, Meta, UnsetType

from handlers.auth import current_user
from handlers.common import (
    Forbidden, NotFound, Page, Routes, Struct, ValidationFailed, decode_cursor, encode_cursor, json_response,
    make_page, no_content, page_request, parse_id, path_id, read_json,
)
from handlers.context import pool_key
from handlers.media import media_links
from handlers.posts import UserBrief, user_brief
from realtime.frames import IdStr, Message, iso
from realtime.frames import messages_for
from storage import media
from storage import messages as store
from storage import users as user_store
from storage import visibility

routes = Routes("messages")

MAX_GROUP = 256
LISTED_USERS = 3  # the members a listed conversation names (ConversationSummary.users)


# ---------------------------------------------------------------- wire shapes


class MemberOut(Struct):
    user_id: str
    user: Annotated[UserBrief | None, Meta(
        description="the member as lists show users, with avatar_url; null for a member the viewer may not be"
                    " shown (blocked either way, deactivated or suspended), as other lists leave such a user out")]
    read_seq: int
    delivered_seq: int


class ConversationOut(Struct):
    """A conversation with its members' positions (detail)."""

    id: str
    kind: str
    title: str
    created_by: str
    last_seq: int
    read_seq: int
    unread_count: int
    members: list[MemberOut]
    created_at: str
    last_message_at: str
    muted: bool = False  # the viewer's settings: a muted conversation never pushes nor e-mails
    pinned: bool = False
    request: bool = False  # a message request for the viewer (folder=requests) until accepted


class ConversationSummary(Struct):
    """A conversation in the viewer's list."""

    id: str
    kind: str
    title: str
    member_ids: list[str]
    users: Annotated[list[UserBrief], Meta(description=(
        f"up to {LISTED_USERS} members besides the viewer, as lists show users (with avatar_url), enough to"
        " draw a face and a title such as \"ana, ben and 3 others\": the first by joining order, then by id,"
        " of those the viewer may be shown (a member blocked either way, deactivated or suspended is left"
        " out, as in every list); `member_ids` still names everyone"))]
    last_seq: int
    read_seq: int
    unread_count: int
    last_message: Annotated[Message | None, Meta(
        description="the newest message the viewer may see; null while there is none (a new conversation)")]
    last_message_at: str
    muted: bool = False
    pinned: bool = False
    request: bool = False


class CreateConversation(Struct):
    member_ids: Annotated[list[IdStr], Meta(min_length=1, max_length=MAX_GROUP - 1)]
    title: Annotated[str, Meta(max_length=100)] = ""


class ConversationSettings(Struct):
    """The viewer's own settings of a conversation, and a group's title (for everyone)."""

    muted: bool | UnsetType = UNSET
    pinned: bool | UnsetType = UNSET
    title: Annotated[str, Meta(max_length=100)] | UnsetType = UNSET


class AddMembers(Struct):
    user_ids: Annotated[list[IdStr], Meta(min_length=1, max_length=MAX_GROUP - 1)]



class ApartMembers(ValidationFailed):
    message = "Some of these users cannot be in one group."



# ---------------------------------------------------------------- the rules


async def create_conversation(pool: asyncpg.Pool, creator: int, body: CreateConversation) -> tuple[int, bool]:
    """One other member: the 1:1 conversation (made on first use); more: a new group. Members are
    counted once each and without the creator, so `[b, b]` or `[me, b]` is the 1:1 with b."""
    others = {int(m) for m in body.member_ids} - {creator}
    if not others:
        raise ValidationFailed("member_ids must name someone else.", fields={"member_ids": "Name someone else."})
    unknown = await unreachable(pool, creator, others)
    if len(others) == 1:
        if unknown:
            raise NotFound("No such user.")
        return await store.get_or_create_direct(pool, creator, others.pop())
    if unknown:
        raise ValidationFailed("member_ids: unknown users.",
                               fields={"member_ids": "Unknown: " + ", ".join(str(u) for u in sorted(unknown))})
    if await visibility.conflicts(pool, others):
        raise ApartMembers(fields={"member_ids": ApartMembers.message})
    async with pool.acquire() as conn, conn.transaction():
        return await store.create_group_txn(conn, creator, sorted(others), body.title), True


async def unreachable(pool: asyncpg.Pool, sender: int, users: set[int]) -> set[int]:
    """Of these users, those the sender may not add or message: unknown, inactive, or kept apart."""
    active = await user_store.existing_active_users(pool, users)
    return users - (active & await visibility.reachable(pool, sender, users))


async def conversation_detail(pool: asyncpg.Pool, links: media.MediaLinks, conversation_id: int,
                              viewer: int) -> ConversationOut:
    """A conversation the viewer belongs to, its members with their briefs; 404 otherwise."""
    row = await store.get_conversation(pool, conversation_id, viewer)
    if row is None:
        raise NotFound()
    members = await store.get_members(pool, conversation_id, viewer)
    return ConversationOut(
        id=str(row["id"]), kind=row["kind"], title=row["title"], created_by=str(row["created_by"]),
        last_seq=row["last_seq"], read_seq=row["read_seq"],
        unread_count=await store.unread_count(pool, conversation_id, viewer),
        members=[MemberOut(user_id=str(m["user_id"]), user=user_brief(links, m) if m["id"] is not None else None,
                           read_seq=m["read_seq"], delivered_seq=m["delivered_seq"]) for m in members],
        created_at=iso(row["created_at"]), last_message_at=iso(row["last_message_at"]),
        muted=row["muted"], pinned=row["pinned_at"] is not None, request=not row["accepted"],
    )



# ---------------------------------------------------------------- REST routes


@routes.route("GET", "/api/conversations/", response=Page[ConversationSummary],
              query={"folder": "inbox (default) or requests: conversations started by people you do not follow,"
                               " until you accept them", "cursor": "from `next`", "limit": "page size"})
async def list_conversations(request: web.Request) -> web.Response:
    """The viewer's conversations in a folder: pinned ones first (on the first page), then the rest,
    latest activity first, with the last message and unread count."""
    viewer = current_user(request)
    page = page_request(request)
    folder = request.query.get("folder", "inbox")
    if folder not in ("inbox", "requests"):
        raise ValidationFailed("folder must be inbox or requests.", fields={"folder": "inbox or requests."})
    cursor = decode_cursor(page.cursor, datetime, str)
    before = (cursor[0], parse_id(cursor[1], "cursor")) if cursor is not None else None
    pool = request.app[pool_key]
    requests = folder == "requests"
    pinned = [] if before is not None else await store.list_conversations(
        pool, viewer, None, store.MAX_PINNED, requests, pinned=True)
    rows = await store.list_conversations(pool, viewer, before, page.limit + 1, requests)
    with_last = [r for r in pinned + rows if r["last_message_id"] is not None]  # a new conversation has none
    lasts = dict(zip((r["id"] for r in with_last), await messages_for(pool, viewer, with_last, "last_message_")))
    # the page's conversations are chosen: their members' briefs in one query, after
    briefs = await store.member_briefs(pool, viewer, [r["id"] for r in (pinned + rows)[:len(pinned) + page.limit]],
                                       LISTED_USERS)
    links = media_links(request)
    items = [ConversationSummary(
        id=str(r["id"]), kind=r["kind"], title=r["title"], member_ids=[str(m) for m in r["member_ids"] or ()],
        users=[user_brief(links, u) for u in briefs.get(r["id"], ())],
        last_seq=r["last_seq"], read_seq=r["read_seq"], unread_count=r["unread"], last_message=lasts.get(r["id"]),
        last_message_at=iso(r["last_message_at"]), muted=r["muted"], pinned=r["pinned_at"] is not None,
        request=not r["accepted"],
    ) for r in pinned + rows]
    listed = make_page(request, items[len(pinned):], page.limit, lambda c: encode_cursor(c.last_message_at, c.id))
    return json_response(Page(results=items[:len(pinned)] + listed.results, next=listed.next))


@routes.route("PATCH", "/api/conversations/{id}/", sees="member", body=ConversationSettings, response=ConversationOut)
async def patch_conversation(request: web.Request) -> web.Response:
    """Mute (still delivered, never pushed nor e-mailed) or pin (listed first; at most 5) a
    conversation for yourself, or rename a group (for everyone)."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    body = await read_json(request, ConversationSettings)
    pool = request.app[pool_key]
    row = await store.get_conversation(pool, conversation_id, viewer)
    if row is None:
        raise NotFound()
    if body.title is not UNSET and row["kind"] != "group":
        raise ValidationFailed("Only a group has a title.", fields={"title": "Only a group has a title."})
    try:
        await store.update_member_settings(pool, conversation_id, viewer, None if body.muted is UNSET else body.muted,
                                           None if body.pinned is UNSET else body.pinned)
    except store.TooManyPinned:
        raise ValidationFailed(f"Pin at most {store.MAX_PINNED} conversations.",
                               fields={"pinned": f"At most {store.MAX_PINNED}."}) from None
    if body.title is not UNSET:
        await store.set_title(pool, conversation_id, body.title)
    return json_response(await conversation_detail(pool, media_links(request), conversation_id, viewer))


@routes.route("POST", "/api/conversations/{id}/accept/", sees="member", response=ConversationOut)
async def accept_conversation(request: web.Request) -> web.Response:
    """Accept a message request: the conversation moves to your inbox and its messages push again."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    pool = request.app[pool_key]
    if not await store.answer_request(pool, conversation_id, viewer, accept=True):
        raise NotFound()
    return json_response(await conversation_detail(pool, media_links(request), conversation_id, viewer))


@routes.route("DELETE", "/api/conversations/{id}/", sees="member", status=204)
async def decline_conversation(request: web.Request) -> web.Response:
    """Decline (delete) a conversation for yourself: it leaves both folders and never pushes; the
    others see no difference. Starting it again yourself, or answering, brings it back."""
    if not await store.answer_request(request.app[pool_key], path_id(request), current_user(request), accept=False):
        raise NotFound()
    return no_content()

@routes.route("POST", "/api/conversations/", body=CreateConversation, response=ConversationOut, status=201,
              also={200: "one other member, and the 1:1 conversation with them exists already: that one"})
async def start_conversation(request: web.Request) -> web.Response:
    """Start a conversation: one other member gives the 1:1 (the existing one if any), more a group."""
    viewer = current_user(request)
    body = await read_json(request, CreateConversation)
    conversation_id, created = await create_conversation(request.app[pool_key], viewer, body)
    detail = await conversation_detail(request.app[pool_key], media_links(request), conversation_id, viewer)
    return json_response(detail, status=201 if created else 200)


@routes.route("GET", "/api/conversations/{id}/", sees="member", response=ConversationOut)
async def get_conversation(request: web.Request) -> web.Response:
    """A conversation: members, title and each member's read position."""
    return json_response(await conversation_detail(request.app[pool_key], media_links(request), path_id(request),
                                                   current_user(request)))


@routes.route("POST", "/api/conversations/{id}/members/", sees="member", body=AddMembers, response=ConversationOut)
async def add_members(request: web.Request) -> web.Response:
    """Add members to a group (any member may; at most 256 members)."""
    viewer = current_user(request)
    conversation_id = path_id(request)
    body = await read_json(request, AddMembers)
    pool = request.app[pool_key]
    new = {int(u) for u in body.user_ids}
    unknown = await unreachable(pool, viewer, new)
    if unknown:
        raise ValidationFailed("user_ids: unknown users.",
                               fields={"user_ids": "Unknown: " + ", ".join(str(u) for u in sorted(unknown))})
    async with pool.acquire() as conn, conn.transaction():
        row = await store.lock_group_txn(conn, conversation_id)
        if row is None or await store.get_conversation(conn, conversation_id, viewer) is None:
            raise NotFound()
        if row["kind"] != "group":
            raise ValidationFailed("Members can be added to groups only.")
        if await visibility.conflicts(conn, new | set(await store.member_ids(conn, conversation_id))):
            raise ApartMembers(fields={"user_ids": ApartMembers.message})
        if await store.add_members_txn(conn, conversation_id, viewer, new) > MAX_GROUP:
            raise ValidationFailed(f"A group has at most {MAX_GROUP} members.",
                                   fields={"user_ids": f"At most {MAX_GROUP} members."})
    return json_response(await conversation_detail(pool, media_links(request), conversation_id, viewer))


@routes.route("DELETE", "/api/conversations/{id}/members/{user_id}/", sees="owner", status=204)
async def remove_member(request: web.Request) -> web.Response:
    """Leave a group (your own id) or, as its creator, remove a member."""
    viewer = current_user(request)
    conversation_id, target = path_id(request), path_id(request, "user_id")
    pool = request.app[pool_key]
    row = await store.get_conversation(pool, conversation_id, viewer)
    if row is None:
        raise NotFound()
    if row["kind"] != "group":
        raise ValidationFailed("A 1:1 conversation has no members to remove.")
    if target != viewer and row["created_by"] != viewer:
        raise Forbidden("Only the group's creator can remove others.")
    if not await store.remove_member(pool, conversation_id, target):
        raise NotFound()
    return no_content()

