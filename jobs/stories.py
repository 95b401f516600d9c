"""The story jobs: archive expired stories for their owners, and remove expired stories' media
(S3 objects, media rows marked deleted) once the grace period after expiry has passed.

Both take `now` from the clock they are given, so tests move time instead of sleeping; both are
idempotent (a rerun finds nothing left to do) and work in batches.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

import asyncpg

from jobs.periodic import Job
from storage import media, stories

BATCH = 500


async def archive_expired_stories(pool: asyncpg.Pool, now: datetime) -> int:
    """Archive every story expired at `now`; returns how many."""
    archived = 0
    while True:
        count = await stories.archive_expired(pool, now, BATCH)
        archived += count
        if count < BATCH:
            return archived


async def remove_expired_story_media(pool: asyncpg.Pool, s3: Any, bucket: str, now: datetime,
                                     grace: timedelta) -> int:
    """Mark deleted the media of stories expired at least `grace` ago, then delete their objects;
    returns how many media items. Rows are marked first: if S3 fails, the media job's pass over
    deleted media removes the objects later."""
    removed = 0
    while True:
        rows = await stories.retire_expired_media(pool, now, grace, BATCH)
        await media.delete_objects(s3, bucket, [key for row in rows for key in media.object_keys(row)])
        removed += len(rows)
        if len(rows) < BATCH:
            return removed


def story_jobs(pool: asyncpg.Pool, s3: Any, bucket: str, clock: Callable[[], datetime], grace_seconds: int,
               interval: float) -> list[Job]:
    """The two story jobs, each run every `interval` seconds by one process of the cluster."""

    async def archive() -> int:
        return await archive_expired_stories(pool, clock())

    async def remove_media() -> int:
        return await remove_expired_story_media(pool, s3, bucket, clock(), timedelta(seconds=grace_seconds))

    return [Job("archive_expired_stories", interval, archive),
            Job("remove_expired_story_media", interval, remove_media)]
