"""The story jobs, on the test's clock: archiving expired stories for their owners, and removing
expired stories' media an hour after expiry (S3 objects gone, media rows marked deleted)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.background import background_key
from app.main import create_app
from handlers.context import clock_key, config_key, s3_key
from jobs.stories import archive_expired_stories, remove_expired_story_media
from tests.conftest import make_config
from tests.support import Clock, new_story, objects_of, user_with_token, view


@pytest.fixture
def client(clocked_client):
    return clocked_client

GRACE = timedelta(hours=1)


async def archive(client, headers) -> list[dict]:
    response = await client.get("/api/stories/archive/", headers=headers)
    assert response.status == 200, await response.text()
    return (await response.json())["results"]


async def test_expired_stories_are_archived_for_their_owner_with_their_view_count(client, pool, clock):
    owner, owner_h = await user_with_token(client)
    fan, fan_h = await user_with_token(client)
    old = await new_story(client, owner_h, "first")
    assert await view(client, fan_h, old) == 204
    clock.advance(hours=1)
    young = await new_story(client, owner_h, "second")

    assert await archive_expired_stories(pool, clock()) == 0  # nothing expired yet
    assert await archive(client, owner_h) == []
    clock.advance(hours=23)
    assert await archive_expired_stories(pool, clock()) == 1
    archived = await archive(client, owner_h)
    assert [(s["id"], s["caption"], s["view_count"]) for s in archived] == [(old["id"], "first", 1)]
    assert archived[0]["media"] is not None  # kept until the grace period ends
    assert await archive(client, fan_h) == []  # the owner's own archive only
    assert await archive_expired_stories(pool, clock()) == 0  # a rerun does nothing

    clock.advance(hours=1)
    assert await archive_expired_stories(pool, clock()) == 1
    assert [s["id"] for s in await archive(client, owner_h)] == [young["id"], old["id"]]
    response = await client.get("/api/stories/archive/?limit=1", headers=owner_h)
    body = await response.json()
    assert [s["id"] for s in body["results"]] == [young["id"]]
    rest = await (await client.get(body["next"], headers=owner_h)).json()
    assert [s["id"] for s in rest["results"]] == [old["id"]] and rest["next"] is None


async def test_media_is_removed_an_hour_after_expiry_and_not_before(client, pool, clock):
    owner, owner_h = await user_with_token(client)
    story = await new_story(client, owner_h)
    media_id = int(story["media"]["id"])
    stored = await objects_of(client, owner["id"])
    assert stored
    bucket = client.app[config_key].s3.bucket

    clock.advance(hours=24, minutes=59)
    assert await remove_expired_story_media(pool, client.app[s3_key], bucket, clock(), GRACE) == 0
    assert await objects_of(client, owner["id"]) == stored
    clock.advance(minutes=1)
    assert await remove_expired_story_media(pool, client.app[s3_key], bucket, clock(), GRACE) == 1
    assert await objects_of(client, owner["id"]) == []
    assert await pool.fetchval("SELECT deleted_at FROM media WHERE id = $1", media_id) is not None
    assert await remove_expired_story_media(pool, client.app[s3_key], bucket, clock(), GRACE) == 0

    await archive_expired_stories(pool, clock())
    archived = await archive(client, owner_h)
    assert [(s["id"], s["media"]) for s in archived] == [(story["id"], None)]


async def test_a_live_story_keeps_its_media_whatever_the_jobs_do(client, pool, clock):
    owner, owner_h = await user_with_token(client)
    story = await new_story(client, owner_h)
    clock.advance(hours=23)
    bucket = client.app[config_key].s3.bucket
    assert await remove_expired_story_media(pool, client.app[s3_key], bucket, clock(), GRACE) == 0
    assert await archive_expired_stories(pool, clock()) == 0
    response = await client.get("/api/stories/", headers=owner_h)
    assert [s["media"]["id"] for s in (await response.json())["results"]] == [story["media"]["id"]]


async def test_the_story_jobs_run_on_the_platform_runner(aiohttp_client, stack_env, config):
    app = create_app(make_config(stack_env, database_url=config.database.url, jobs_enabled=True))
    app[clock_key] = Clock()
    await aiohttp_client(app)
    names = {job.name for job in app[background_key].jobs}
    assert {"archive_expired_stories", "remove_expired_story_media"} <= names
