"""The erasure job: accounts whose deletion was requested more than the grace period ago are
erased, their S3 objects first (deleting a missing object is a no-op, so a crash between the two
steps is resumed by the next run), then their rows, with an `account_erased` event.

`now` comes from the clock the job is given, so tests move time instead of waiting 30 days.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable

import asyncpg

import events
from jobs.periodic import Job
from storage import erasure, media, outbox

log = logging.getLogger("glint.erasure")

BATCH = 100

# more objects an account owns besides its media (its export archives): (pool, user_id) -> keys
KeySource = Callable[[asyncpg.Pool, int], Awaitable[list[str]]]


async def erase_account(pool: asyncpg.Pool, s3: Any, bucket: str, user_id: int,
                        key_sources: tuple[KeySource, ...] = ()) -> bool:
    """Delete the account's S3 objects, then its rows; False if it was already gone."""
    keys = [key for row in await erasure.media_rows(pool, user_id) for key in media.object_keys(row)]
    for source in key_sources:
        keys += await source(pool, user_id)
    await media.delete_objects(s3, bucket, keys)
    async with pool.acquire() as conn, conn.transaction():
        if not await erasure.erase_txn(conn, user_id):
            return False
        await outbox.add(conn, events.AccountErased(user_id=str(user_id)), user_id)
    log.info("erased account %s (%d objects)", user_id, len(keys))
    return True


async def erase_due_accounts(pool: asyncpg.Pool, s3: Any, bucket: str, now: datetime, grace: timedelta,
                             key_sources: tuple[KeySource, ...] = ()) -> int:
    """Erase every account whose deletion was requested at least `grace` before `now`; how many."""
    erased = 0
    while True:
        due = await erasure.take_due(pool, now - grace, BATCH)
        for user_id in due:
            erased += await erase_account(pool, s3, bucket, user_id, key_sources)
        if len(due) < BATCH:
            return erased


def erasure_jobs(pool: asyncpg.Pool, s3: Any, bucket: str, clock: Callable[[], datetime], grace_days: int,
                 interval: float, key_sources: tuple[KeySource, ...] = ()) -> list[Job]:
    """The erasure job, run every `interval` seconds by one process of the cluster."""

    async def run() -> int:
        return await erase_due_accounts(pool, s3, bucket, clock(), timedelta(days=grace_days), key_sources)

    return [Job("erase_deleted_accounts", interval, run)]
