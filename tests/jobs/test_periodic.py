"""Periodic jobs: one process in the cluster runs each job per interval."""

from __future__ import annotations

import pytest

from jobs.periodic import Job, lock_key, run_job_once


@pytest.mark.redis_cluster
async def test_a_job_lock_held_by_one_process_keeps_a_second_from_running_the_job(redis_clean):
    runs: list[str] = []

    async def work() -> int:
        runs.append("ran")
        return 1

    job = Job("nightly_cleanup", 60, work)
    assert await run_job_once(redis_clean, job, owner="process-a") is True
    assert await run_job_once(redis_clean, job, owner="process-b") is False
    assert runs == ["ran"]
    assert await redis_clean.get(lock_key("nightly_cleanup")) == b"process-a"
    # once the interval has passed (the lock expired) another process may run it
    await redis_clean.delete(lock_key("nightly_cleanup"))
    assert await run_job_once(redis_clean, job, owner="process-b") is True
    assert runs == ["ran", "ran"]


async def test_a_failing_job_is_logged_and_keeps_its_turn(redis_clean, caplog):
    async def broken() -> None:
        raise RuntimeError("boom")

    job = Job("broken", 60, broken)
    assert await run_job_once(redis_clean, job, owner="a") is True
    assert any("job broken failed" in r.getMessage() for r in caplog.records)
