"""Data export end to end: asked for over REST, built by the consumer, downloaded through the signed
URL as a zip of JSON files and original media bytes, then removed by the job once expired."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from datetime import timedelta

import pytest
import aiohttp

from handlers.context import config_key, s3_key
from jobs.export import remove_expired_exports
from storage import exports
from tests.conftest import wait_for
from tests.support import bearer, delete_account, login, new_post, new_story, register, run_erasure


@pytest.fixture
def client(clocked_client):
    return clocked_client


async def export_state(client, pair: dict) -> tuple[int, dict]:
    response = await client.get("/api/accounts/export/", headers=bearer(pair))
    return response.status, await response.json()


async def exported(client, pair: dict) -> zipfile.ZipFile:
    """Ask for an export, wait for it to be built, and download its archive."""
    first = await client.post("/api/accounts/export/", headers=bearer(pair))
    assert first.status == 202 and (await first.json())["status"] in ("pending", "ready")

    async def ready() -> bool:
        return (await export_state(client, pair))[1].get("status") == "ready"

    await wait_for(ready, timeout=20)
    _, state = await export_state(client, pair)
    assert state["expires_at"] and state["url"].startswith("/api/media/f/")
    async with aiohttp.ClientSession() as session, session.get(client.make_url(state["url"])) as download:
        assert download.status == 200
        return zipfile.ZipFile(io.BytesIO(await download.read()))


async def test_an_export_holds_the_account_and_its_original_media_until_it_expires(client, clock, pool):
    owner, friend = await register(client), await register(client)
    pair, friend_pair = await login(client, owner["username"]), await login(client, friend["username"])
    post = await new_post(client, bearer(pair), "my first #post")
    their_post = await new_post(client, bearer(friend_pair), "theirs")
    story = await new_story(client, bearer(pair), "a story")
    await client.post(f"/api/accounts/users/{owner['id']}/follow/", headers=bearer(friend_pair))
    await client.post(f"/api/accounts/users/{friend['id']}/follow/", headers=bearer(pair))
    await client.post(f"/api/posts/{their_post['id']}/like/", headers=bearer(pair))
    await client.post(f"/api/posts/{their_post['id']}/save/", headers=bearer(pair))
    await client.post("/api/comments/", json={"post_id": their_post["id"], "text": "lovely"}, headers=bearer(pair))
    conversation = await (await client.post("/api/conversations/", json={"member_ids": [friend["id"]]},
                                            headers=bearer(pair))).json()
    for who, text in ((pair, "hi"), (friend_pair, "hello back")):
        sent = await client.post(f"/api/conversations/{conversation['id']}/messages/",
                                 json={"client_id": text, "text": text}, headers=bearer(who))
        assert sent.status == 201
    assert (await export_state(client, pair))[0] == 404

    archive = await exported(client, pair)
    names = set(archive.namelist())
    expected = {"profile", "posts", "comments", "likes", "saves", "stories", "followers", "following", "conversations"}
    assert {f"{n}.json" for n in expected} <= names
    files = {n: json.loads(archive.read(f"{n}.json")) for n in expected}
    assert files["profile"]["username"] == owner["username"] and files["profile"]["id"] == owner["id"]
    assert [p["caption"] for p in files["posts"]] == ["my first #post"]
    media_file = files["posts"][0]["media"][0]["file"]
    original_key = await pool.fetchval("SELECT original_key FROM media WHERE id = $1", int(post["media"][0]["id"]))
    original = await client.app[s3_key].get_object(Bucket=client.app[config_key].s3.bucket, Key=original_key)
    async with original["Body"] as body:
        assert archive.read(media_file) == await body.read()
    assert files["stories"][0]["id"] == story["id"] and files["stories"][0]["file"] in names
    assert [c["text"] for c in files["comments"]] == ["lovely"]
    assert [like["post_id"] for like in files["likes"]] == [their_post["id"]]
    assert [save["post_id"] for save in files["saves"]] == [their_post["id"]]
    assert [f["username"] for f in files["followers"]] == [friend["username"]]
    assert [f["username"] for f in files["following"]] == [friend["username"]]
    (chat,) = files["conversations"]
    assert [m["text"] for m in chat["messages"]] == ["hi", "hello back"]

    key = await pool.fetchval("SELECT object_key FROM exports")
    bucket = client.app[config_key].s3.bucket
    clock.advance(hours=47)
    assert await remove_expired_exports(pool, client.app[s3_key], bucket, clock()) == 0
    clock.advance(hours=2)
    assert await remove_expired_exports(pool, client.app[s3_key], bucket, clock()) == 1
    listing = await client.app[s3_key].list_objects_v2(Bucket=bucket, Prefix=key)
    assert listing.get("KeyCount", 0) == 0
    assert (await export_state(client, pair))[0] == 404
    assert "export_requested" in [r["type"] for r in await pool.fetch("SELECT type FROM outbox")]


async def test_a_repeated_request_joins_the_pending_export_and_erasure_removes_archives(client, clock, pool):
    owner = await register(client)
    pair = await login(client, owner["username"])
    statuses = [(await client.post("/api/accounts/export/", headers=bearer(pair))).status for _ in range(2)]
    assert statuses == [202, 202]

    async def ready() -> bool:
        return (await export_state(client, pair))[1].get("status") == "ready"

    await wait_for(ready, timeout=20)
    assert await pool.fetchval("SELECT count(*) FROM exports") == 1
    key = await pool.fetchval("SELECT object_key FROM exports")
    assert (await delete_account(client, pair)).status == 202
    clock.advance(days=30, seconds=1)
    assert await run_erasure(client) == 1
    listing = await client.app[s3_key].list_objects_v2(Bucket=client.app[config_key].s3.bucket, Prefix=key)
    assert listing.get("KeyCount", 0) == 0


async def test_an_export_pending_for_over_an_hour_is_replaced_by_a_new_request(client, pool):
    owner = await register(client)
    pair = await login(client, owner["username"])
    async with pool.acquire() as conn:  # a build the consumer gave up on, an hour and more ago
        await conn.execute("INSERT INTO exports (user_id, requested_at) VALUES ($1, now() - interval '61 minutes')",
                           int(owner["id"]))
    assert (await client.post("/api/accounts/export/", headers=bearer(pair))).status == 202
    assert await pool.fetchval("SELECT array_agg(status ORDER BY id) FROM exports") in (
        ["failed", "pending"], ["failed", "ready"])


async def test_a_request_racing_the_pending_exports_build_gets_an_export(client, pool):
    """The pending export is finished while a new request waits on it: the request makes a new
    one, which the next request joins (the request is one statement: a conflict and a read after
    it once found no export at all when the build finished in between, a 500)."""
    owner = await register(client)
    user_id = int(owner["id"])
    pending = await pool.fetchval("INSERT INTO exports (user_id) VALUES ($1) RETURNING id", user_id)
    async with pool.acquire() as builder, pool.acquire() as requester:
        build = builder.transaction()
        await build.start()
        await builder.execute("UPDATE exports SET status = 'ready', object_key = 'k' WHERE id = $1", pending)

        async def request():
            async with requester.transaction():
                return await exports.request_txn(requester, user_id)

        asked = asyncio.create_task(request())

        async def waiting_on_the_build() -> bool:  # the request waits for the build's row lock
            return await pool.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted") > 0

        await wait_for(waiting_on_the_build, timeout=10)
        await build.commit()
        row, created = await asked
    assert created and row["status"] == "pending" and row["id"] != pending
    assert await pool.fetchval("SELECT array_agg(status ORDER BY id) FROM exports") == ["ready", "pending"]
    again, created = await exports.request_txn(pool, user_id)
    assert not created and again["id"] == row["id"]


async def test_an_export_holds_the_messages_its_owner_may_read_and_none_from_someone_kept_from_them(client):
    """A group keeps two members who blocked each other: each one's archive holds the group's
    messages as their history shows them, without the other's (those sent before the block too)."""
    (zed, zed_pair), (xan, xan_pair), (yul, yul_pair) = [
        (user, await login(client, user["username"])) for user in [await register(client) for _ in range(3)]]
    group = await (await client.post("/api/conversations/", json={"member_ids": [xan["id"], yul["id"]]},
                                     headers=bearer(zed_pair))).json()
    url = f"/api/conversations/{group['id']}/messages/"
    for pair, text in ((zed_pair, "hi"), (xan_pair, "x before block"), (yul_pair, "y before block")):
        assert (await client.post(url, json={"client_id": text, "text": text}, headers=bearer(pair))).status == 201
    assert (await client.post(f"/api/accounts/users/{yul['id']}/block/", headers=bearer(xan_pair))).status == 204
    for pair, text in ((zed_pair, "z after block"), (xan_pair, "x after block")):
        assert (await client.post(url, json={"client_id": text, "text": text}, headers=bearer(pair))).status == 201
    reply = {"client_id": "re", "text": "re x", "reply_to_seq": 5}  # zed answers xan's: no reply for yul
    assert (await client.post(url, json=reply, headers=bearer(zed_pair))).status == 201

    (chat,) = json.loads((await exported(client, yul_pair)).read("conversations.json"))
    assert [(m["seq"], m["text"], m["reply_to_seq"]) for m in chat["messages"]] == [
        (1, "hi", None), (3, "y before block", None), (4, "z after block", None), (6, "re x", None)]
    history = await (await client.get(url, headers=bearer(yul_pair))).json()
    assert sorted((m["seq"], m["reply_to_seq"]) for m in history["results"]) == [
        (m["seq"], m["reply_to_seq"]) for m in chat["messages"]]
    (chat,) = json.loads((await exported(client, zed_pair)).read("conversations.json"))
    assert [(m["seq"], m["reply_to_seq"]) for m in chat["messages"]] == [(1, None), (2, None), (3, None), (4, None),
                                                                         (5, None), (6, 5)]
