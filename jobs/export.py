"""Data export in the background: the export consumer builds the archive an `export_requested`
event asks for (a zip of JSON files and the original bytes of the account's media) and puts it in
S3; the expiry job deletes archives once they expire.

Both are idempotent: an export that is no longer pending is skipped, and the expiry job deletes the
object before it forgets the key, so a crash in between is resumed by the next run. The archive is
built in a spooled temporary file (in memory up to 16 MB) and uploaded with one PUT.
"""

from __future__ import annotations

import asyncio
import mimetypes
import tempfile
import zipfile
from datetime import datetime, timedelta
from typing import Any, BinaryIO, Callable

import asyncpg
import msgspec

import events
from jobs.periodic import Job
from storage import exports, media, outbox
from storage.outbox import Event

BATCH = 200
_encoder = msgspec.json.Encoder()


def archive_key(user_id: int, export_id: int) -> str:
    """Where an export's archive lives in S3."""
    return f"exports/{user_id}/{export_id}.zip"


def as_api_ids(value: Any, key: str = "") -> Any:
    """Ids as the API sends them (strings), everything else as it is."""
    if isinstance(value, dict):
        return {k: as_api_ids(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [as_api_ids(v, key) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and (key in ("id", "ids") or key.endswith(("_id", "_ids"))):
        return str(value)
    return value


def media_file_name(row: Any) -> str:
    """The archive path of a media original."""
    extension = mimetypes.guess_extension(row["content_type"]) or ".bin"
    return f"media/{row['id']}{extension}"


async def build_archive(pool: asyncpg.Pool, s3: Any, bucket: str, user_id: int, out: BinaryIO) -> None:
    """Write the account's archive (a zip of JSON files and media originals) into `out`."""
    data = await exports.gather(pool, user_id)
    wanted = [m for p in data["posts"] for m in p["media_ids"]] + [s["media_id"] for s in data["stories"] if s["media_id"]]
    if data["profile"].get("avatar_media_id"):
        wanted.append(data["profile"]["avatar_media_id"])
    rows = await exports.media_of(pool, user_id, sorted(set(wanted)))
    files = {row["id"]: media_file_name(row) for row in rows}
    for post in data["posts"]:
        post["media"] = [{"id": m, "file": files.get(m)} for m in post.pop("media_ids")]
    for story in data["stories"]:
        story["file"] = files.get(story["media_id"])
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in data.items():
            await asyncio.to_thread(archive.writestr, f"{name}.json", _encoder.encode(as_api_ids(content)))
        for row in rows:  # one original in memory at a time
            response = await s3.get_object(Bucket=bucket, Key=row["original_key"])
            async with response["Body"] as body:
                original = await body.read()
            await asyncio.to_thread(archive.writestr, zipfile.ZipInfo(files[row["id"]]), original,
                                    zipfile.ZIP_STORED)


class ExportConsumer:
    """Builds requested exports."""

    name = "export"
    topics = ("accounts",)

    def __init__(self, pool: asyncpg.Pool, s3: Any, bucket: str, ttl_seconds: int,
                 clock: Callable[[], datetime]) -> None:
        self.pool, self.s3, self.bucket, self.ttl, self.clock = pool, s3, bucket, ttl_seconds, clock

    async def handle(self, event: Event) -> None:
        """Build the archive of a pending export; other events, and exports done already, are skipped."""
        if event.type != "export_requested":
            return
        body = outbox.body_of(event, events.ExportRequested)
        export = await exports.get_pending(self.pool, int(body.export_id))
        if export is None:
            return
        key = archive_key(export["user_id"], export["id"])
        with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as spool:
            await build_archive(self.pool, self.s3, self.bucket, export["user_id"], spool)
            spool.seek(0)
            body = await asyncio.to_thread(spool.read)
        await self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/zip")
        now = self.clock()
        if not await exports.mark_ready(self.pool, export["id"], key, len(body), now, now + timedelta(seconds=self.ttl)):
            await media.delete_objects(self.s3, self.bucket, [key])


async def remove_expired_exports(pool: asyncpg.Pool, s3: Any, bucket: str, now: datetime) -> int:
    """Delete the archives expired at `now`; how many."""
    removed = 0
    while True:
        rows = await exports.list_expired(pool, now, BATCH)
        await media.delete_objects(s3, bucket, [r["object_key"] for r in rows])
        await exports.mark_expired(pool, [r["id"] for r in rows])
        removed += len(rows)
        if len(rows) < BATCH:
            return removed


def export_jobs(pool: asyncpg.Pool, s3: Any, bucket: str, clock: Callable[[], datetime], interval: float) -> list[Job]:
    """The expiry job, run every `interval` seconds by one process of the cluster."""

    async def run() -> int:
        return await remove_expired_exports(pool, s3, bucket, clock())

    return [Job("remove_expired_exports", interval, run)]
