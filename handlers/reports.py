"""Reports: anyone may report a post, comment, story, message or account they can see. One open
report per reporter and target: a repeat answers 200 with the first. What moderators do with
reports is in handlers/admin.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from aiohttp import web
from msgspec import Meta

import events
from handlers.auth import current_user
from handlers.comments import visible_comment
from handlers.common import IdIn, NotFound, Routes, Struct, ValidationFailed, json_response, parse_id, read_json
from handlers.context import app_now, pool_key
from handlers.posts import visible_post
from handlers.stories import visible_story
from storage import moderation, outbox, visibility

routes = Routes("reports")


TargetType = Literal["post", "comment", "story", "message", "user"]
Reason = Literal["spam", "harassment", "hate", "nudity", "violence", "self_harm", "ip", "other"]


class TargetRef(Struct):
    type: TargetType
    id: IdIn


class ReportCreate(Struct):
    target: TargetRef
    reason: Reason
    text: Annotated[str, Meta(max_length=2000)] = ""


class ReportOut(Struct):
    id: str
    status: Literal["open", "resolved"]
    target: TargetRef
    reason: str
    text: str
    created_at: datetime


def report_out(row) -> ReportOut:
    return ReportOut(id=str(row["id"]), status=row["status"], target=TargetRef(type=row["target_type"],
                     id=str(row["target_id"])), reason=row["reason"], text=row["text"], created_at=row["created_at"])


async def visible_target_owner(pool: asyncpg.Pool, now: datetime, viewer: int, kind: str, target_id: int) -> int:
    """Whose the target is, if the viewer may see it (a story: live at `now`); 404 otherwise (as
    reading it would answer)."""
    if kind == "post":
        return (await visible_post(pool, viewer, target_id))["author_id"]
    if kind == "comment":
        return (await visible_comment(pool, viewer, target_id))["author_id"]
    if kind == "story":
        return (await visible_story(pool, viewer, target_id, now))["owner_id"]
    if kind == "message":
        message = await moderation.get_message_by_id(pool, target_id, viewer)
        if message is None:
            raise NotFound()
        return message["sender_id"]
    if not await visibility.may_be_shown(pool, viewer, target_id):
        raise NotFound()
    return target_id


async def file_report(pool: asyncpg.Pool, now: datetime, reporter: int, body: ReportCreate) -> tuple[object, bool]:
    """Report a target the reporter can see at `now` (not their own); emits report_created when new."""
    target_id = parse_id(str(body.target.id), "target.id")
    owner = await visible_target_owner(pool, now, reporter, body.target.type, target_id)
    if owner == reporter:
        raise ValidationFailed("You cannot report yourself or what you made.",
                               fields={"target": "Your own."})
    async with pool.acquire() as conn, conn.transaction():
        row, created = await moderation.create_report_txn(conn, reporter, body.target.type, target_id, owner,
                                                          body.reason, body.text.strip())
        if created:
            await outbox.add(conn, events.ReportCreated(
                report_id=str(row["id"]), reporter_id=str(reporter), target_type=body.target.type,
                target_id=str(target_id), target_owner_id=str(owner), reason=body.reason), row["id"])
    return row, created


@routes.route("POST", "/api/reports/", body=ReportCreate, response=ReportOut, status=201)
async def create(request: web.Request) -> web.Response:
    """Report a post, comment, story, message or account: 201, or 200 with the open report already filed."""
    reporter = current_user(request)
    body = await read_json(request, ReportCreate)
    row, created = await file_report(request.app[pool_key], app_now(request.app), reporter, body)
    return json_response(report_out(row), status=201 if created else 200)
