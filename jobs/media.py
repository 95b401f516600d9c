"""The media job: removes uploads never attached to anything within a day, and the S3 objects of
media whose post was deleted."""

from __future__ import annotations

from typing import Any

import asyncpg

from jobs.periodic import Job
from storage import media

BATCH = 500


async def remove_unused_media(pool: asyncpg.Pool, s3: Any, bucket: str, unattached_ttl: int) -> int:
    """Remove unattached and retired media, rows then objects, in batches; returns how many."""
    removed = 0
    while True:
        rows = await media.delete_removable(pool, unattached_ttl, BATCH)
        await media.delete_objects(s3, bucket, [key for row in rows for key in media.object_keys(row)])
        removed += len(rows)
        if len(rows) < BATCH:
            return removed


def media_jobs(pool: asyncpg.Pool, s3: Any, bucket: str, unattached_ttl: int, interval: float = 3600.0) -> list[Job]:
    """The media job, run hourly by one process of the cluster."""

    async def remove_media() -> int:
        return await remove_unused_media(pool, s3, bucket, unattached_ttl)

    return [Job("remove_unused_media", interval, remove_media)]
