"""Data export: ask for an archive of the account (built in the background by jobs/export.py) and
fetch it through a signed URL while it lasts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg
from aiohttp import web
from msgspec import UNSET, UnsetType

import events
from handlers.auth import current_user
from handlers.common import NotFound, Routes, Struct, json_response
from handlers.context import pool_key
from handlers.media import media_links
from storage import exports, outbox

routes = Routes("accounts")


class ExportOut(Struct):
    status: Literal["pending", "ready"]
    url: str | UnsetType = UNSET
    expires_at: datetime | UnsetType = UNSET


def export_out(request: web.Request, row: asyncpg.Record) -> ExportOut:
    """An export as its owner sees it; a ready one with a freshly signed download URL."""
    if row["status"] != "ready":
        return ExportOut(status="pending")
    return ExportOut(status="ready", url=media_links(request).file(row["object_key"]), expires_at=row["expires_at"])


async def request_export(pool: asyncpg.Pool, user_id: int) -> asyncpg.Record:
    """Start building an archive of the account, or join the one being built."""
    async with pool.acquire() as conn, conn.transaction():
        row, created = await exports.request_txn(conn, user_id)
        if created:
            await outbox.add(conn, events.ExportRequested(user_id=str(user_id), export_id=str(row["id"])), user_id)
    return row


@routes.route("POST", "/api/accounts/export/", response=ExportOut, status=202)
async def post_export(request: web.Request) -> web.Response:
    """Build an archive of the account in the background (a zip of JSON files and original media)."""
    user_id = current_user(request)
    row = await request_export(request.app[pool_key], user_id)
    return json_response(export_out(request, row), status=202)


@routes.route("GET", "/api/accounts/export/", response=ExportOut)
async def get_export(request: web.Request) -> web.Response:
    """The newest export: pending, or ready with a signed download URL and when it expires; 404 if none."""
    row = await exports.latest(request.app[pool_key], current_user(request))
    if row is None:
        raise NotFound("No export; ask for one with POST /api/accounts/export/.")
    return json_response(export_out(request, row))
