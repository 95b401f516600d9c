"""Media uploads: a multipart stream spooled under a byte limit, checked and rendered by
storage.media, answered with a signed link that each rendition's name completes; and, where no
front proxy checks those links (the local stack), the route that checks them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from aiohttp import BodyPartReader, web
from aiohttp.web_protocol import RequestPayloadError
from msgspec import Meta

from handlers.auth import current_user
from handlers.common import (
    BodyTimeout, NotFound, PayloadTooLarge, Routes, Struct, UnsupportedMediaType, ValidationFailed, body_deadline,
    go_on, json_response, path_id, reading, unreadable_body,
)
from handlers.context import config_key, links_key, pool_key, presigner_key, s3_key
from storage import media, messages, visibility

routes = Routes("media")

CHUNK = 64 * 1024
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the file


class RenditionOut(Struct):
    width: int | None
    height: int | None


class MediaStatic(Struct):
    """A MediaOut without its link (which expires): what the post cache keeps pre-encoded."""

    id: str
    kind: str
    content_type: str
    width: int | None
    height: int | None
    placeholder: str
    renditions: Annotated[dict[str, RenditionOut], Meta(description=(
        "by file name: an image's renditions (`{width}.webp` and `{width}.jpg` per width), a "
        "video's `original`"))]


class MediaOut(MediaStatic):
    url: Annotated[str, Meta(description=(
        "a signed, expiring link that each rendition's name completes: the file of rendition "
        "`320.webp` is `url + \"320.webp\"`, ready for <img src> and srcset (absolute when a media "
        "host is configured, else a path on this origin)"))]


def media_links(request: web.Request) -> media.MediaLinks:
    """The application's media link signer."""
    return request.app[links_key]


AVATAR_URL_DOC = ("a signed, expiring link to the user's avatar (its smallest WebP rendition), ready "
                  "for <img src>; null while they have none")


def media_fields(row: Any) -> dict[str, Any]:
    """The fields of a media row's public shape but its link. Images list their renditions; a
    video its original."""
    renditions = {name: RenditionOut(width=r["width"], height=r["height"]) for name, r in row["renditions"].items()}
    if row["kind"] == "video":
        renditions["original"] = RenditionOut(width=row["width"], height=row["height"])
    return {"id": str(row["id"]), "kind": row["kind"], "content_type": row["content_type"], "width": row["width"],
            "height": row["height"], "placeholder": row["placeholder"], "renditions": renditions}


def media_out(links: media.MediaLinks, row: Any) -> MediaOut:
    """The public shape of a media row (or of its cached copy), one signed link for all its files."""
    return MediaOut(**media_fields(row), url=links.folder(media.media_folder(row), row["kind"]))


async def receive_upload(request: web.Request, spool: media.Spool) -> str:
    """Stream the multipart field `file` into the spool; return its sniffed format.

    The client's file name and content type are ignored; the byte limit (images or video, by the
    sniffed format) is enforced while reading, so an oversized upload is refused mid-stream."""
    config = request.app[config_key]
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType("Send multipart/form-data with the file in the field `file`.")
    largest = max(config.media.image_max_bytes, config.media.video_max_bytes)
    if request.content_length is not None and request.content_length > largest + MULTIPART_SLACK:
        raise PayloadTooLarge(f"Uploads are limited to {largest} bytes.")
    await go_on(request)
    try:
        async with body_deadline(request) as deadline:
            fmt = await _stream_file(request, spool, largest, deadline)
    except ValueError:  # a malformed multipart body
        raise ValidationFailed("The multipart body is malformed.") from None
    except TimeoutError:
        raise BodyTimeout() from None
    except RequestPayloadError:
        raise unreadable_body(request) from None
    if spool.size == 0:
        raise ValidationFailed("The file is empty.", fields={"file": "The file is empty."})
    spool.finish()
    return fmt or check_format(spool.head)


async def _stream_file(request: web.Request, spool: media.Spool, largest: int,
                       deadline: asyncio.Timeout) -> str | None:
    """receive_upload's reading: the field `file` into the spool, the body timeout restarted by
    every chunk; the sniffed format, once 32 bytes are in."""
    config = request.app[config_key]
    reader = await request.multipart()
    part = await reader.next()
    while part is not None and getattr(part, "name", None) != "file":
        await part.release()
        reading(request, deadline)
        part = await reader.next()
    if part is None or not isinstance(part, BodyPartReader):
        raise ValidationFailed("The field `file` is required.", fields={"file": "This field is required."})
    fmt: str | None = None
    limit = largest
    while chunk := await part.read_chunk(CHUNK):
        reading(request, deadline)
        spool.write(chunk)
        if fmt is None and len(spool.head) >= 32:
            fmt = check_format(spool.head)
            limit = config.media.video_max_bytes if fmt == "mp4" else config.media.image_max_bytes
        if spool.size > limit:
            raise PayloadTooLarge(f"This file is larger than {limit} bytes.")
    return fmt


def check_format(head: bytes) -> str:
    """The sniffed format, or 415."""
    fmt = media.sniff(head)
    if fmt is None:
        raise UnsupportedMediaType("Upload a JPEG, PNG, WebP or HEIC image or an MP4 video.")
    return fmt


@routes.route("POST", "/api/media/", response=MediaOut, status=201)
async def upload_media(request: web.Request) -> web.Response:
    """Upload a photo (JPEG, PNG, WebP, HEIC) or an MP4 video in the multipart field `file`."""
    user_id = current_user(request)
    config = request.app[config_key]
    widths = [int(w) for w in config.media.rendition_widths.split(",")]
    with media.Spool() as spool:
        fmt = await receive_upload(request, spool)
        try:
            row = await media.store_upload(request.app[pool_key], request.app[s3_key], config.s3.bucket, user_id,
                                           spool, fmt, widths, config.media.max_pixels)
        except media.TooManyPixels as exc:
            raise PayloadTooLarge(str(exc)) from None
        except media.UnsupportedFormat as exc:
            raise UnsupportedMediaType(str(exc)) from None
        except media.CorruptMedia as exc:
            raise ValidationFailed(str(exc), fields={"file": str(exc)}) from None
    return json_response(media_out(media_links(request), row), status=201)


@routes.route("GET", "/api/media/{id}/", sees="audience", response=MediaOut)
async def get_media(request: web.Request) -> web.Response:
    """One media item with freshly signed URLs: its owner's, a profile photo whose profile the viewer
    may be shown, one shown in a post the viewer may see, or one sent in a conversation the viewer
    is a member of."""
    viewer = current_user(request)
    pool = request.app[pool_key]
    row = await media.get_media(pool, path_id(request))
    if row is None:
        raise NotFound()
    if row["owner_id"] != viewer and await media.is_avatar_of(pool, row["id"], row["owner_id"]):
        if not await visibility.may_be_shown(pool, viewer, row["owner_id"]):
            raise NotFound()
    elif row["owner_id"] != viewer:
        author = await media.is_in_visible_post(pool, row["id"])
        if author is None or not await visibility.can_see(pool, viewer, author):
            if not await messages.media_seen_by(pool, row["id"], viewer):
                raise NotFound()
    return json_response(media_out(media_links(request), row))


@routes.route("GET", "/api/media/{scope}/{expires}/{signature}/{path:.+}", auth=False, sees="anyone",
              status=307)
async def follow_link(request: web.Request) -> web.StreamResponse:
    """A media link, where no front proxy checks them (the local stack): checked as the proxy
    would, then redirected to a short-lived presigned URL of the object. With a media host
    configured this answers 404: links point there."""
    if request.app[config_key].media.url:
        raise NotFound()
    info = request.match_info
    key = media_links(request).check(info["scope"], info["expires"], info["signature"], info["path"])
    if key is None:
        raise NotFound()
    return web.Response(status=307, headers={"Location": request.app[presigner_key].url(key)})
