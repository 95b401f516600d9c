"""Media: uploads spooled to disk, sniffed by magic bytes, rendered with libvips, stored in S3,
handed out as signed links (MediaLinks) that a front proxy checks; and the media rows that
remember them.

The image work (render_image) is synchronous and meant for a worker thread: it reads only the
header before checking the pixel count, so a decompression bomb costs nothing, then makes every
rendition from one shrink-on-load decode.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import re
import struct
import tempfile
from dataclasses import dataclass, field
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

import asyncpg
import pyvips

Conn = asyncpg.Connection | asyncpg.Pool

IMAGE_FORMATS = {"jpeg": "jpegload", "png": "pngload", "webp": "webpload", "heif": "heifload"}
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif"}
MP4_BRANDS = {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"dash", b"M4V "}
SNIFF_BYTES = 64


# ---------------------------------------------------------------- refusals


class MediaRejected(Exception):
    """An upload that is refused; nothing of it is stored."""


class UnsupportedFormat(MediaRejected):
    """Not a format glint accepts (by its bytes, whatever its name says)."""


class TooManyPixels(MediaRejected):
    """The header declares more pixels than the limit."""


class CorruptMedia(MediaRejected):
    """The format is right but the file is damaged or truncated."""


# ---------------------------------------------------------------- receiving


def sniff(head: bytes) -> str | None:
    """The format of a file from its first bytes: jpeg, png, webp, heif, mp4, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and len(head) >= 12:
        size = min(struct.unpack(">I", head[:4])[0], len(head))
        brands = {head[8:12]} | {head[i:i + 4] for i in range(16, size - 3, 4)}
        if brands & HEIF_BRANDS:
            return "heif"
        if brands & MP4_BRANDS:
            return "mp4"
    return None


class Spool:
    """An upload being received: in memory up to `memory_limit` bytes, then in a temporary file."""

    def __init__(self, memory_limit: int = 1024 * 1024) -> None:
        self.memory_limit = memory_limit
        self.size = 0
        self.head = b""
        self._buffer: io.BytesIO | None = io.BytesIO()
        self._file: Any = None

    def write(self, chunk: bytes) -> None:
        """Append a chunk, moving to disk once past the memory limit."""
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[:SNIFF_BYTES - len(self.head)]
        self.size += len(chunk)
        if self._buffer is not None and self.size > self.memory_limit:
            self._file = tempfile.NamedTemporaryFile(prefix="glint-upload-", delete=True)
            self._file.write(self._buffer.getbuffer())
            self._buffer = None
        (self._buffer if self._buffer is not None else self._file).write(chunk)

    def finish(self) -> None:
        """All bytes are in: flush what is on disk so other readers see it."""
        if self._file is not None:
            self._file.flush()

    def vips_input(self) -> str | bytes:
        """What libvips reads: the file's path, or the bytes when they stayed in memory."""
        return self._file.name if self._file is not None else self._buffer.getvalue()

    def open(self) -> BinaryIO:
        """A fresh reader over the whole upload."""
        if self._file is not None:
            return open(self._file.name, "rb")
        return io.BytesIO(self._buffer.getvalue())

    def close(self) -> None:
        """Drop the bytes (and the temporary file)."""
        if self._file is not None:
            self._file.close()
        self._buffer = self._file = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_mp4(stream: BinaryIO, size: int) -> None:
    """An MP4 container check: top-level boxes that chain exactly to the end, starting with ftyp
    and holding a moov. Raises CorruptMedia otherwise."""
    offset, seen = 0, []
    while offset < size:
        stream.seek(offset)
        header = stream.read(16)
        if len(header) < 8:
            raise CorruptMedia("The MP4 container is truncated.")
        box_size, box_type = struct.unpack(">I4s", header[:8])
        if box_size == 1:
            if len(header) < 16:
                raise CorruptMedia("The MP4 container is truncated.")
            box_size = struct.unpack(">Q", header[8:16])[0]
        elif box_size == 0:
            box_size = size - offset
        if box_size < 8 or offset + box_size > size:
            raise CorruptMedia("The MP4 container is truncated or damaged.")
        seen.append(box_type)
        offset += box_size
        if len(seen) > 10_000:
            raise CorruptMedia("The MP4 container has too many boxes.")
    if not seen or seen[0] != b"ftyp" or b"moov" not in seen:
        raise CorruptMedia("The MP4 container has no movie header.")


# ---------------------------------------------------------------- rendering


@dataclass
class Rendition:
    """One encoded rendition."""

    name: str
    data: bytes
    width: int
    height: int
    content_type: str


@dataclass
class Rendered:
    """What render_image made of an upload."""

    width: int
    height: int
    placeholder: str
    renditions: list[Rendition] = field(default_factory=list)


def plan_widths(widths: list[int], image_width: int) -> list[tuple[str, int]]:
    """(name, width) of each rendition: a rendition is never wider than the image, and a width the
    image cannot fill is made once, at the image's own width, under the smallest name covering it."""
    planned: list[tuple[str, int]] = []
    made: set[int] = set()
    for wanted in sorted(set(widths)):
        width = min(wanted, image_width)
        if width not in made:
            made.add(width)
            planned.append((str(wanted), width))
    return planned


def _eight_bit(image: pyvips.Image) -> pyvips.Image:
    """sRGB (or grey) 8-bit, whatever the source's depth or colour space."""
    if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
        image = image.colourspace("b-w" if image.bands <= 2 else "srgb")
        if image.format != "uchar":
            image = image.cast("uchar")
    return image


def _placeholder(image: pyvips.Image) -> str:
    """The average colour as #rrggbb."""
    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    bands = [image[i].avg() for i in range(image.bands)]
    if len(bands) == 1:
        bands *= 3
    return "#" + "".join(f"{max(0, min(255, round(v))):02x}" for v in bands[:3])


def render_image(source: str | bytes, fmt: str, widths: list[int], max_pixels: int,
                 webp_quality: int = 80, jpeg_quality: int = 85) -> Rendered:
    """Check and render one image (run it in a worker thread). Raises MediaRejected subclasses."""
    pyvips.cache_set_max(0)  # a server renders each upload once: the operation cache only holds memory
    try:
        if isinstance(source, bytes):
            header = pyvips.Image.new_from_buffer(source, "", access="sequential")
        else:
            header = pyvips.Image.new_from_file(source, access="sequential")
    except pyvips.Error:
        raise UnsupportedFormat("The file could not be read as an image.") from None
    loader = header.get("vips-loader") if "vips-loader" in header.get_fields() else ""
    if not loader.startswith(IMAGE_FORMATS[fmt]):
        raise UnsupportedFormat("The file's contents do not match a supported image format.")
    width, height = header.width, header.height
    if width * height > max_pixels:
        raise TooManyPixels(f"The image has {width * height} pixels; the limit is {max_pixels}.")
    if "orientation" in header.get_fields() and header.get("orientation") in (5, 6, 7, 8):
        width, height = height, width
    plan = plan_widths(widths, width)
    tall = 10_000_000  # thumbnail fits a box: libvips' largest coordinate makes height never the constraint
    try:
        if isinstance(source, bytes):
            # thumbnail_buffer passes load options only through option_string
            base = pyvips.Image.thumbnail_buffer(source, plan[-1][1], height=tall, size="down",
                                                 option_string="fail_on=truncated")
        else:
            base = pyvips.Image.thumbnail(source, plan[-1][1], height=tall, size="down", fail_on="truncated")
        # a lazy thumbnail can be read once ("out of order read"): render it to memory, then reuse
        base = _eight_bit(base).copy_memory()
        rendered = Rendered(width=width, height=height, placeholder="")
        for name, target in reversed(plan):
            image = base if target == base.width else base.thumbnail_image(target, height=tall, size="down")
            rendered.renditions.append(Rendition(
                f"{name}.webp", image.webpsave_buffer(Q=webp_quality, keep="none"), image.width, image.height,
                "image/webp"))
            flat = image.flatten(background=[255] * (image.bands - 1)) if image.hasalpha() else image
            rendered.renditions.append(Rendition(
                f"{name}.jpg", flat.jpegsave_buffer(Q=jpeg_quality, keep="none", optimize_coding=True),
                image.width, image.height, "image/jpeg"))
        rendered.placeholder = _placeholder(image)  # of the smallest rendition: the same colour, cheaper
    except pyvips.Error:
        raise CorruptMedia("The image is damaged or truncated.") from None
    return rendered


# ---------------------------------------------------------------- S3


async def upload_objects(s3: Any, bucket: str, objects: list[tuple[str, Any, str]]) -> None:
    """Put (key, body, content type) objects concurrently; if any fails, remove all and re-raise."""
    results = await asyncio.gather(
        *(s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
          for key, body, content_type in objects),
        return_exceptions=True,
    )
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        await delete_objects(s3, bucket, [key for key, _, _ in objects])
        raise failure


async def delete_objects(s3: Any, bucket: str, keys: list[str]) -> None:
    """Remove objects (missing ones are fine), a thousand per request."""
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        if chunk:
            await s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})


def object_keys(row: Any) -> list[str]:
    """Every S3 key a media row owns."""
    return [row["original_key"], *(r["key"] for r in row["renditions"].values())]


# ---------------------------------------------------------------- presigned URLs


@lru_cache(maxsize=16)
def _signing_key(secret: str, datestamp: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (datestamp, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


@dataclass(frozen=True)
class UrlSigner:
    """Presigned GET URLs (SigV4, path-style) for one endpoint and bucket.

    Signed here rather than by botocore: a feed page signs hundreds of URLs, and botocore takes
    about half a millisecond for each. The signing time is rounded down to a window (a quarter of
    `ttl`), so a URL stays the same for a while (clients and caches can reuse it); it expires `ttl`
    seconds after its window began, so no link outlives `ttl` from when it was handed out.
    """

    endpoint: str
    region: str
    access_key: str
    secret_key: str
    bucket: str
    ttl: int

    def url(self, key: str, now: datetime | None = None) -> str:
        """A presigned GET URL of one object (memoized for its signing window: a feed page asks for
        about 180 of them, mostly the same ones as the page before)."""
        window = max(self.ttl // 4, 1)
        stamp = int((now or datetime.now(timezone.utc)).timestamp()) // window * window
        return _presign(self, key, stamp, window)


@lru_cache(maxsize=65536)
def _presign(signer: UrlSigner, key: str, stamp: int, window: int) -> str:
    parts = urlsplit(signer.endpoint)
    host = parts.hostname or ""
    if parts.port and (parts.scheme, parts.port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{parts.port}"
    amz_date = datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{signer.region}/s3/aws4_request"
    path = f"{parts.path.rstrip('/')}/{quote(signer.bucket, safe='')}/{quote(key, safe='/-_.~')}"
    query = (
        f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={quote(signer.access_key + '/' + scope, safe='-_.~')}"
        f"&X-Amz-Date={amz_date}&X-Amz-Expires={min(signer.ttl, 604800)}&X-Amz-SignedHeaders=host"
    )
    canonical = f"GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(_signing_key(signer.secret_key, amz_date[:8], signer.region), to_sign.encode(),
                         hashlib.sha256).hexdigest()
    return f"{parts.scheme}://{host}{path}?{query}&X-Amz-Signature={signature}"


# ---------------------------------------------------------------- signed links
#
# What clients get: one signed folder link per media item, which every rendition's file name
# completes (`<url>320.webp`), so a feed page costs one MD5 per photo instead of a SigV4 signature
# per rendition. A link is checked by the front proxy before it reads the object from the bucket
# (nginx's secure_link module: see deploy/nginx.conf), never by glint's event loop; the local
# stack, which has no proxy, checks it in glint (handlers/media.py) and redirects to a presigned
# URL. The signed text ends with the secret (not the MAC construction nginx lacks, but no length
# extension either, and the signed text is always glint's own choice):
#
#   /api/media/{scope}/{expires}/{signature}/{path}     signature = base64url(md5(
#                                                          "{expires}:{scope}:{signed path}:{secret}"))
#
#   scope i (an image's renditions): path the S3 folder of its renditions ("media/{owner}/{media}/")
#           + a rendition name ("320.webp"); the signed path is the folder, so one link serves
#           every rendition, but never the original (which keeps the uploader's metadata): the
#           proxy admits only "<digits>.webp|jpg" files
#   scope v (a video): path its folder + "original", signed as for i
#   scope f (one object, e.g. an export archive): path the object's key, signed whole

LINK_PREFIX = "/api/media"
RENDITION_FILE = r"[0-9]{1,5}\.(?:webp|jpg)"
LINK_FOLDER = r"(?:[A-Za-z0-9_-]{1,40}/){1,4}"  # what deploy/nginx.conf admits: no dots, so no ".."


def link_signature(expires: int, scope: str, path: str, secret: str) -> str:
    """The signature nginx's `secure_link_md5 "$expires:scope:path:secret"` computes."""
    digest = hashlib.md5(f"{expires}:{scope}:{path}:{secret}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def link_secret(secret: str, fallback: str) -> str:
    """The link secret: the configured one, else one derived from `fallback` (the JWT key), so a
    local stack needs nothing more; a front proxy must be given the configured one."""
    return secret or hmac.new(fallback.encode(), b"glint media links", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class MediaLinks:
    """Signed, expiring media links under `base` (the media host, or "" for glint's own origin).

    The expiry is rounded to a window (a quarter of `ttl`), so a link stays the same for a while
    (browsers and CDNs reuse it) and no link outlives `ttl` from when it was handed out."""

    base: str
    secret: str
    ttl: int

    def expires(self, now: float | None = None) -> int:
        """When links handed out now expire (Unix seconds)."""
        window = max(self.ttl // 4, 1)
        return int(now if now is not None else time.time()) // window * window + self.ttl

    def folder(self, folder: str, kind: str, now: float | None = None, expires: int | None = None) -> str:
        """The link a media item's file names complete, from the S3 folder its files are in
        (media_folder): its renditions for an image ("320.webp"), "original" for a video
        (`expires` from expires(), when a page reads the clock once)."""
        return _folder_link(self, "v" if kind == "video" else "i", folder,
                            self.expires(now) if expires is None else expires)

    def avatar(self, key: str | None, expires: int | None = None) -> str | None:
        """The link to a user's avatar file (the S3 key SQL's avatar_key() names, migration 0023),
        None while there is none: its folder's link (memoized for its window) with the file's name."""
        if key is None:
            return None
        folder, _, name = key.rpartition("/")
        return self.folder(folder + "/", "image", expires=expires) + name

    def file(self, key: str, now: float | None = None) -> str:
        """A link to one object by its S3 key."""
        expires = self.expires(now)
        return f"{self.base}{LINK_PREFIX}/f/{expires}/{link_signature(expires, 'f', key, self.secret)}/{key}"

    def check(self, scope: str, expires: str, signature: str, path: str, now: float | None = None) -> str | None:
        """The S3 key a link names when it is genuine and unexpired (what the proxy checks), else
        None."""
        if scope == "f":
            signed, key = path, path
        elif scope in ("i", "v"):
            folder, _, name = path.rpartition("/")
            signed, key = folder + "/", path
            if scope == "i" and not re.fullmatch(RENDITION_FILE, name) or scope == "v" and name != "original":
                return None
            if not re.fullmatch(LINK_FOLDER, signed):
                return None
        else:
            return None
        if not expires.isdigit() or len(expires) > 12 or int(expires) < (now if now is not None else time.time()):
            return None
        if ".." in path.split("/") or not hmac.compare_digest(link_signature(int(expires), scope, signed, self.secret),
                                                                signature):
            return None
        return key


def media_folder(row: Any) -> str:
    """The S3 folder of a media row's files (where its renditions and original are), "/"-ended."""
    return row["original_key"].rpartition("/")[0] + "/"


@lru_cache(maxsize=65536)
def _folder_link(links: MediaLinks, scope: str, folder: str, expires: int) -> str:
    return f"{links.base}{LINK_PREFIX}/{scope}/{expires}/{link_signature(expires, scope, folder, links.secret)}/{folder}"


# ---------------------------------------------------------------- storing an upload


async def store_upload(pool: asyncpg.Pool, s3: Any, bucket: str, owner_id: int, spool: Spool, fmt: str,
                       widths: list[int], max_pixels: int) -> asyncpg.Record:
    """Check and render an upload, put it in S3 and record it; raises MediaRejected (nothing
    stored) for a refused file."""
    if fmt == "mp4":
        with spool.open() as stream:
            await asyncio.to_thread(check_mp4, stream, spool.size)
        rendered = Rendered(width=0, height=0, placeholder="")
        kind, content_type = "video", "video/mp4"
    else:
        rendered = await asyncio.to_thread(render_image, spool.vips_input(), fmt, widths, max_pixels)
        kind, content_type = "image", {"heif": "image/heif"}.get(fmt, f"image/{fmt}")
    media_id = await pool.fetchval("SELECT next_id()")
    prefix = f"media/{owner_id}/{media_id}"
    renditions = {r.name: {"key": f"{prefix}/{r.name}", "width": r.width, "height": r.height,
                           "content_type": r.content_type} for r in rendered.renditions}
    with spool.open() as original:
        objects = [(f"{prefix}/original", original, content_type),
                   *((f"{prefix}/{r.name}", r.data, r.content_type) for r in rendered.renditions)]
        await upload_objects(s3, bucket, objects)
    try:
        return await pool.fetchrow(
            "INSERT INTO media (id, owner_id, kind, content_type, size_bytes, width, height, placeholder,"
            " original_key, renditions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
            media_id, owner_id, kind, content_type, spool.size, rendered.width or None, rendered.height or None,
            rendered.placeholder, f"{prefix}/original", renditions,
        )
    except BaseException:
        await delete_objects(s3, bucket, [key for key, _, _ in objects])
        raise


# ---------------------------------------------------------------- media rows


async def get_media(conn: Conn, media_id: int) -> asyncpg.Record | None:
    """A live media row."""
    return await conn.fetchrow("SELECT * FROM media WHERE id = $1 AND deleted_at IS NULL", media_id)


async def get_media_many(conn: Conn, media_ids: list[int]) -> dict[int, asyncpg.Record]:
    """Live media rows by id."""
    rows = await conn.fetch("SELECT * FROM media WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL", media_ids)
    return {r["id"]: r for r in rows}


async def is_in_visible_post(conn: Conn, media_id: int) -> int | None:
    """The author of the post that shows this media, if any (for viewers other than its owner)."""
    return await conn.fetchval(
        "SELECT p.author_id FROM post_media pm JOIN posts p ON p.id = pm.post_id WHERE pm.media_id = $1", media_id)


async def is_avatar_of(conn: Conn, media_id: int, owner_id: int) -> bool:
    """Is this media its owner's profile photo (shown to anyone who may see the profile)?"""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND avatar_media_id = $2)",
                                    owner_id, media_id))


async def attach_media_txn(conn: asyncpg.Connection, owner_id: int, media_ids: list[int]) -> set[int]:
    """Mark the owner's unused media as used (by a post, story, avatar or message); returns the ids
    that were; an id missing from the result is someone else's, used already, or gone."""
    rows = await conn.fetch(
        "UPDATE media SET attached_at = now() WHERE id = ANY($2::bigint[]) AND owner_id = $1"
        " AND attached_at IS NULL AND deleted_at IS NULL RETURNING id",
        owner_id, media_ids,
    )
    return {r["id"] for r in rows}


async def retire_media_txn(conn: asyncpg.Connection, media_ids: list[int]) -> None:
    """Mark media whose user is gone (a deleted post) for removal from S3 by the media job."""
    await conn.execute("UPDATE media SET deleted_at = now() WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL",
                       media_ids)


async def delete_removable(conn: Conn, unattached_ttl: int, limit: int) -> list[asyncpg.Record]:
    """Delete up to `limit` media rows of each removable kind and return their S3 keys' rows:
    never attached within `unattached_ttl` seconds, or retired. The row goes first (re-checked
    under its lock, so an upload being attached right now is kept); its objects are the caller's
    to delete next, and a failure there leaves an orphan object, never a post without its image."""
    return await conn.fetch(
        "WITH stale AS (SELECT id FROM media WHERE attached_at IS NULL AND deleted_at IS NULL"
        "   AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED),"
        " retired AS (SELECT id FROM media WHERE deleted_at IS NOT NULL ORDER BY deleted_at LIMIT $2"
        "   FOR UPDATE SKIP LOCKED)"
        " DELETE FROM media WHERE (id IN (SELECT id FROM stale) OR id IN (SELECT id FROM retired))"
        " AND (attached_at IS NULL OR deleted_at IS NOT NULL)"
        " RETURNING id, original_key, renditions",
        float(unattached_ttl), limit,
    )
