"""Comments: one level of replies, deletion by the comment's or the post's author, comment likes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
from aiohttp import web
from msgspec import Meta

import events
from handlers.auth import current_user
from handlers.common import (
    Forbidden, IdIn, NotFound, Page, Routes, Struct, ValidationFailed, encode_cursor, json_response, make_page, no_content,
    page_request, parse_id, path_id, query_id, read_json,
)
from handlers.context import pool_key
from handlers.media import media_links
from handlers.posts import CAPTION_MAX, LikeState, UserBrief, cursor_id, like_routes, user_brief, visible_post
from storage import comments, outbox, users, visibility
from storage.bounds import is_blank

routes = Routes("comments")


class CommentCreate(Struct):
    post_id: IdIn
    text: Annotated[str, Meta(min_length=1, max_length=CAPTION_MAX)]
    parent_id: IdIn | None = None


class CommentOut(Struct):
    id: str
    post_id: str
    parent_id: str | None
    author: UserBrief
    text: str
    like_count: int
    reply_count: int
    liked: bool
    created_at: datetime


def comment_out(row: asyncpg.Record, liked: bool, author: UserBrief) -> CommentOut:
    """The public shape of a comment row."""
    return CommentOut(
        id=str(row["id"]), post_id=str(row["post_id"]),
        parent_id=None if row["parent_id"] is None else str(row["parent_id"]), author=author, text=row["text"],
        like_count=row["like_count"], reply_count=row["reply_count"], liked=liked, created_at=row["created_at"],
    )


def comment_event(kind: type[events.CommentEvent], row: asyncpg.Record, post_author_id: int) -> events.CommentEvent:
    """A comment event of this kind: the post's author is whom a notification goes to."""
    return kind(post_id=str(row["post_id"]), author_id=str(post_author_id), comment_id=str(row["id"]),
                user_id=str(row["author_id"]), parent_id=None if row["parent_id"] is None else str(row["parent_id"]),
                text=row["text"], created_at=row["created_at"])


async def visible_comment(pool: asyncpg.Pool, viewer: int, comment_id: int) -> asyncpg.Record:
    """A comment on a post the viewer may see, by someone not blocked either way; 404 otherwise."""
    row = await comments.get_comment(pool, comment_id)
    if row is None or not await visibility.may_be_shown(pool, viewer, row["author_id"]):
        raise NotFound()
    await visible_post(pool, viewer, row["post_id"])
    return row


async def add_comment(pool: asyncpg.Pool, viewer: int, body: CommentCreate) -> asyncpg.Record:
    """Comment on a post the viewer may see; a reply to a reply joins its thread (one level only).
    Emits comment_created."""
    text = body.text.strip()
    if is_blank(text):
        raise ValidationFailed("text is empty.", fields={"text": "May not be blank."})
    post = await visible_post(pool, viewer, parse_id(str(body.post_id), "post_id"))
    parent_id = None
    if body.parent_id is not None:
        parent = await comments.get_comment(pool, parse_id(str(body.parent_id), "parent_id"))
        if (parent is None or parent["post_id"] != post["id"]
                or not await visibility.may_be_shown(pool, viewer, parent["author_id"])):
            raise ValidationFailed("parent_id is not a comment of this post.", fields={"parent_id": "Not on this post."})
        parent_id = parent["parent_id"] or parent["id"]
    async with pool.acquire() as conn, conn.transaction():
        try:
            row = await comments.create_comment_txn(conn, post["id"], viewer, text, parent_id)
        except asyncpg.ForeignKeyViolationError:  # the parent went meanwhile
            row = None
        if row is None:
            raise NotFound()
        await outbox.add(conn, comment_event(events.CommentCreated, row, post["author_id"]), post["author_id"])
    return row


async def remove_comment(pool: asyncpg.Pool, viewer: int, comment_id: int) -> None:
    """Delete a comment (and its replies): its author or the post's author may. Emits comment_deleted."""
    row = await visible_comment(pool, viewer, comment_id)
    if viewer not in (row["author_id"], row["post_author_id"]):
        raise Forbidden("Only the comment's author or the post's author may delete it.")
    async with pool.acquire() as conn, conn.transaction():
        deleted = await comments.delete_comment_txn(conn, comment_id)
        if deleted is None:
            raise NotFound()
        await outbox.add(conn, comment_event(events.CommentDeleted, deleted, row["post_author_id"]),
                         row["post_author_id"])


async def set_comment_like(pool: asyncpg.Pool, viewer: int, comment_id: int, liked: bool) -> LikeState:
    """Like or unlike a comment, idempotently."""
    await visible_comment(pool, viewer, comment_id)
    async with pool.acquire() as conn, conn.transaction():
        try:
            await (comments.like_comment_txn if liked else comments.unlike_comment_txn)(conn, comment_id, viewer)
        except asyncpg.ForeignKeyViolationError:
            raise NotFound() from None
        count = await comments.like_count(conn, comment_id)
    if count is None:
        raise NotFound()
    return LikeState(liked=liked, like_count=count)


@routes.route("GET", "/api/comments/", sees="audience", response=Page[CommentOut],
              query={"post_id": "top-level comments of this post", "parent_id": "replies to this comment"})
async def list_comments(request: web.Request) -> web.Response:
    """A post's top-level comments with reply counts (?post_id=), or a comment's replies (?parent_id=), oldest first."""
    viewer = current_user(request)
    pool = request.app[pool_key]
    page = page_request(request)
    post_id, parent_id = query_id(request, "post_id"), query_id(request, "parent_id")
    if parent_id is not None:
        post_id = (await visible_comment(pool, viewer, parent_id))["post_id"]
    elif post_id is None:
        raise ValidationFailed("post_id or parent_id is required.", fields={"post_id": "Required."})
    await visible_post(pool, viewer, post_id)
    rows = await comments.list_comments(pool, post_id, parent_id, cursor_id(request, page.cursor), page.limit + 1)
    shown = make_page(request, rows, page.limit, lambda r: encode_cursor(r["id"]))
    authors = await visibility.shown_users(pool, viewer, [r["author_id"] for r in shown.results])
    visible = [r for r in shown.results if r["author_id"] in authors]
    liked = await comments.liked_by(pool, viewer, [r["id"] for r in visible])
    links = media_links(request)
    results = [comment_out(r, r["id"] in liked, user_brief(links, r, "author_id")) for r in visible]
    return json_response(Page(results=results, next=shown.next))


@routes.route("POST", "/api/comments/", body=CommentCreate, response=CommentOut, status=201)
async def create(request: web.Request) -> web.Response:
    """Comment on a post, or reply to a comment (parent_id)."""
    viewer = current_user(request)
    body = await read_json(request, CommentCreate)
    row = await add_comment(request.app[pool_key], viewer, body)
    author = await users.get_brief(request.app[pool_key], viewer)
    return json_response(comment_out(row, False, user_brief(media_links(request), author)), status=201)


@routes.route("DELETE", "/api/comments/{id}/", sees="owner", status=204)
async def delete(request: web.Request) -> web.Response:
    """Delete a comment: its author or the post's author."""
    await remove_comment(request.app[pool_key], current_user(request), path_id(request))
    return no_content()


like, unlike = like_routes(routes, "/api/comments/{id}/", set_comment_like, "Like a comment (idempotent).",
                           "Take back a comment like (idempotent).")
