"""Notifications: the viewer's list (grouped, newest first), unread count, mark read, preferences
(the same table as the settings' `notifications`), and push device registration.

The notifications themselves are made by the consumer in jobs/notifications.py from events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from aiohttp import web
from msgspec import Meta

from handlers.accounts import SettingsPatch, update_settings
from handlers.auth import current_user
from handlers.common import (
    IdIn, NotFound, Page, Routes, Struct, ValidationFailed, encode_cursor, json_response, make_page,
    no_content, page_request, parse_id, path_id, read_json,
)
from handlers.context import pool_key
from handlers.media import media_links
from handlers.graph import _edge_after as timed_cursor  # the same (time, id) cursor as the graph lists
from storage import notifications, users
from storage.notifications import NotificationView

routes = Routes("notifications")

Preferences = Annotated[dict[Annotated[str, Meta(max_length=40)],
                              Annotated[dict[Annotated[str, Meta(max_length=20)], bool], Meta(max_length=8)]],
                        Meta(max_length=40)]


class UnreadCount(Struct):
    unread_count: int


class ReadRequest(Struct):
    up_to_id: Annotated[IdIn, Meta(description="mark this one and everything older read; omit for all")] | None = None


class ReadResult(Struct):
    marked: int
    unread_count: int


class DeviceIn(Struct):
    endpoint: Annotated[str, Meta(min_length=1, max_length=2048, description="http(s) URL the push is POSTed to")]
    platform: Literal["web", "ios", "android"]
    keys: Annotated[dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=512)]],
                    Meta(max_length=8)] = {}


class DeviceOut(Struct):
    id: str
    endpoint: str
    platform: str
    created_at: datetime


@routes.route("GET", "/api/notifications/", response=Page[NotificationView],
              query={"limit": "1..100", "cursor": "from `next`"})
async def list_notifications(request: web.Request) -> web.Response:
    """The viewer's notifications, newest first, each naming its newest actors and counting the rest."""
    viewer = current_user(request)
    page = page_request(request)
    rows = await notifications.list_page(request.app[pool_key], viewer, timed_cursor(page), page.limit,
                                        media_links(request))
    return json_response(make_page(request, rows, page.limit,
                                   lambda n: encode_cursor(n.created_at.isoformat(), n.id)))


@routes.route("GET", "/api/notifications/unread-count/", response=UnreadCount)
async def unread_count(request: web.Request) -> web.Response:
    """How many of the viewer's notifications are unread."""
    viewer = current_user(request)
    return json_response(UnreadCount(unread_count=await notifications.unread_count(request.app[pool_key], viewer)))


@routes.route("POST", "/api/notifications/read/", body=ReadRequest, response=ReadResult)
async def mark_read(request: web.Request) -> web.Response:
    """Mark all notifications read, or `up_to_id` and everything older; 404 if that id is not the viewer's."""
    viewer = current_user(request)
    # body_exists, not can_read_body: the input checks before the handler may have read it already
    body = await read_json(request, ReadRequest) if request.body_exists else ReadRequest()
    up_to = None if body.up_to_id is None else parse_id(str(body.up_to_id), "up_to_id")
    pool = request.app[pool_key]
    marked = await notifications.mark_read(pool, viewer, up_to)
    if marked is None:
        raise NotFound()
    return json_response(ReadResult(marked=marked, unread_count=await notifications.unread_count(pool, viewer)))


@routes.route("GET", "/api/notifications/preferences/", response=Preferences)
async def get_preferences(request: web.Request) -> web.Response:
    """The viewer's notification preferences: {kind: {in_app, push, email}}."""
    viewer = current_user(request)
    prefs = await users.get_notification_prefs(request.app[pool_key], [viewer])
    if viewer not in prefs:
        raise NotFound()
    return json_response(prefs[viewer])


@routes.route("PATCH", "/api/notifications/preferences/", body=Preferences, response=Preferences)
async def patch_preferences(request: web.Request) -> web.Response:
    """Change some of the viewer's notification preferences ({kind: {channel: on}}); the whole table comes back."""
    viewer = current_user(request)
    body = await read_json(request, Preferences)
    row = await update_settings(request.app[pool_key], viewer, SettingsPatch(notifications=body))
    return json_response(users.merge_notification_prefs(row["notification_prefs"]))


def _device_out(row) -> DeviceOut:
    return DeviceOut(id=str(row["id"]), endpoint=row["endpoint"], platform=row["platform"], created_at=row["created_at"])


@routes.route("POST", "/api/notifications/devices/", body=DeviceIn, response=DeviceOut, status=201)
async def add_device(request: web.Request) -> web.Response:
    """Register a device for push (the same endpoint again updates its keys)."""
    viewer = current_user(request)
    body = await read_json(request, DeviceIn)
    parts = urlsplit(body.endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in body.endpoint):
        raise ValidationFailed("endpoint must be an http(s) URL.", fields={"endpoint": "Enter an http(s) URL."})
    row = await notifications.add_device(request.app[pool_key], viewer, body.endpoint, body.keys, body.platform)
    return json_response(_device_out(row), status=201)


@routes.route("GET", "/api/notifications/devices/", response=list[DeviceOut])
async def list_devices(request: web.Request) -> web.Response:
    """The viewer's push devices, newest first."""
    viewer = current_user(request)
    return json_response([_device_out(r) for r in await notifications.list_devices(request.app[pool_key], viewer)])


@routes.route("DELETE", "/api/notifications/devices/{id}/", sees="owner", status=204)
async def remove_device(request: web.Request) -> web.Response:
    """Unregister one of the viewer's push devices."""
    viewer = current_user(request)
    if not await notifications.remove_device(request.app[pool_key], viewer, path_id(request)):
        raise NotFound()
    return no_content()
