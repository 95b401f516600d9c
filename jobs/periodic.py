"""Periodic jobs: each runs at most once per interval across the whole cluster.

Before a run, a process takes the job's Redis lock with SET NX and a TTL of the interval, and keeps
it: any other process that wakes in the same interval finds it taken and skips. A job that crashes
loses nothing but its turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable

from prometheus_client import Counter, Histogram
from redis.asyncio import Redis

JOB_RUNS = Counter("glint_job_runs_total", "Periodic job runs", ["job", "outcome"])
JOB_DURATION = Histogram("glint_job_duration_seconds", "Periodic job duration", ["job"])

log = logging.getLogger("glint.jobs")


@dataclass(frozen=True)
class Job:
    """A named coroutine function run every `interval` seconds."""

    name: str
    interval: float
    fn: Callable[[], Awaitable[object]]


def lock_key(name: str) -> str:
    """The Redis key of a job's lock."""
    return f"job:{{{name}}}:lock"


async def try_lock(redis: Redis, name: str, ttl: float, owner: str) -> bool:
    """Take a job's lock for `ttl` seconds unless another process holds it."""
    return bool(await redis.set(lock_key(name), owner, nx=True, px=max(int(ttl * 1000), 1)))


async def run_job_once(redis: Redis, job: Job, owner: str) -> bool:
    """Run the job if this process gets its lock; return whether it ran."""
    if not await try_lock(redis, job.name, job.interval, owner):
        JOB_RUNS.labels(job.name, "skipped").inc()
        return False
    started = time.perf_counter()
    outcome = "ok"
    try:
        result = await job.fn()
    except Exception:
        outcome = "error"
        log.exception("job %s failed after %.3fs", job.name, time.perf_counter() - started)
        return True
    finally:
        elapsed = time.perf_counter() - started
        JOB_DURATION.labels(job.name).observe(elapsed)
        JOB_RUNS.labels(job.name, outcome).inc()
    log.info("job %s done in %.3fs: %s", job.name, elapsed, result)
    return True


async def run_jobs(redis: Redis, jobs: list[Job], stop: asyncio.Event) -> None:
    """Run every job on its interval until stopped."""
    owner = uuid.uuid4().hex
    next_run = {job.name: 0.0 for job in jobs}
    while not stop.is_set() and jobs:
        now = time.monotonic()
        for job in jobs:
            if now >= next_run[job.name]:
                next_run[job.name] = now + job.interval
                try:
                    await run_job_once(redis, job, owner)
                except Exception:  # Redis away: try again next interval
                    log.exception("job %s could not run", job.name)
        delay = max(min(next_run.values()) - time.monotonic(), 0.05)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass
