"""`glint backup` / `glint restore`: seed a stack, back it up, restore into a second, fresh stack
on other ports, and the same users, posts, media bytes and messages are served there under the
same ids; a damaged archive and a stack that holds data are refused."""

from __future__ import annotations

import tarfile
import tempfile
import uuid
from pathlib import Path

import aiohttp
import pytest

import devstack
from app import backup
from app.clients import open_s3
from app.main import create_app
from tests.conftest import make_config
from tests.support import bearer, jpeg, login, start_conversation, upload, user_with_token


@pytest.fixture(scope="module")
def fresh_stack():
    """A second stack (PostgreSQL, Valkey, S3) on free ports, with nothing in it."""
    root = Path(tempfile.mkdtemp(prefix="glint-restore-stack-"))
    services = ["postgres", "redis", "s3"]
    try:  # a start that fails part way still stops what it started
        yield devstack.up(root, ports={name: devstack.free_port() for name in services}, services=services, fast=True,
                          log=lambda *a: None)
    finally:
        devstack.destroy(root, log=lambda *a: None)


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, url
        return await response.read()


async def seed(client) -> dict:
    """Two users, a post with a photo, a like, a conversation with messages."""
    ana, ana_headers = await user_with_token(client)
    bob, bob_headers = await user_with_token(client)
    media = await (await upload(client, ana_headers, jpeg(320, 240))).json()
    post = await client.post("/api/posts/", json={"caption": "backed up #safe", "media_ids": [media["id"]]},
                             headers=ana_headers)
    assert post.status == 201, await post.text()
    post = await post.json()
    assert (await client.post(f"/api/posts/{post['id']}/like/", headers=bob_headers)).status in (200, 201, 204)
    conversation = await start_conversation(client, ana_headers["Authorization"].split()[1], bob["id"])
    for n in range(3):
        sent = await client.post(f"/api/conversations/{conversation['id']}/messages/",
                                 json={"client_id": f"m{n}", "text": f"message {n}"}, headers=ana_headers)
        assert sent.status == 201, await sent.text()
    return {"ana": ana, "bob": bob, "media": media, "post": post, "conversation": conversation}


async def served(client, seeded: dict) -> dict:
    """What a stack serves of the seeded data, by id, as bob (who logs in with his password)."""
    headers = bearer((await login(client, seeded["bob"]["username"]))["access"])
    ana = await (await client.get(f"/api/accounts/users/{seeded['ana']['id']}/", headers=headers)).json()
    post = await (await client.get(f"/api/posts/{seeded['post']['id']}/", headers=headers)).json()
    messages = await (await client.get(f"/api/conversations/{seeded['conversation']['id']}/messages/",
                                       headers=headers)).json()
    media = await (await client.get(f"/api/media/{seeded['media']['id']}/", headers=headers)).json()
    photo = {name: await fetch(client.make_url(media["url"] + name)) for name in media["renditions"]}
    return {
        "ana": (ana["id"], ana["username"], ana["posts_count"], ana["created_at"]),
        "post": (post["id"], post["caption"], post["like_count"], post["liked"], [m["id"] for m in post["media"]]),
        "messages": [(m["id"], m["seq"], m["text"], m["sender_id"]) for m in messages["results"]],
        "photo": photo,
    }


async def test_backup_restores_into_a_fresh_stack_with_the_same_data_and_ids(
        aiohttp_client, stack_env, database_url, redis_clean, fresh_stack, tmp_path):
    bucket = f"backup-{uuid.uuid4().hex[:8]}"
    source = make_config(stack_env, database_url=database_url, s3_bucket=bucket)
    async with open_s3(source) as s3:
        await s3.create_bucket(Bucket=bucket)
    client = await aiohttp_client(create_app(source))
    seeded = await seed(client)
    before = await served(client, seeded)
    assert len(before["messages"]) == 3 and before["post"][2] == 1

    archive = tmp_path / "glint.tar"
    manifest = await backup.backup(source, archive, log=lambda *a: None)
    assert manifest.database.tables["users"] == 2 and manifest.database.tables["messages"] == 3
    assert manifest.object_count == len(seeded["media"]["renditions"]) + 1  # renditions and the original
    with tarfile.open(archive) as tar:
        assert {backup.DUMP, backup.MANIFEST} <= set(tar.getnames())

    target = make_config(fresh_stack, s3_bucket=bucket)
    assert (await backup.stack_is_empty(target))[0]
    await backup.restore(target, archive, log=lambda *a: None)
    restored = await aiohttp_client(create_app(target))
    assert await served(restored, seeded) == before
    # new ids keep counting after the restored ones, never reusing them
    again, headers = await user_with_token(restored)
    assert int(again["id"]) > int(seeded["bob"]["id"])

    # the stack now holds data: a second restore is refused unless forced
    with pytest.raises(backup.BackupError, match="not empty"):
        await backup.restore(target, archive, log=lambda *a: None)
    await backup.restore(target, archive, force=True, log=lambda *a: None)
    assert await served(restored, seeded) == before

    # a damaged archive is refused before anything is touched
    data = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        offset = tar.getmember(backup.DUMP).offset_data
    data[offset + 100] ^= 0xFF
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(data))
    with pytest.raises(backup.BackupError, match="postgres.dump is damaged"):
        await backup.restore(target, damaged, force=True, log=lambda *a: None)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(archive.read_bytes()[: len(data) // 2])
    with pytest.raises(backup.BackupError, match="not a usable glint backup"):
        await backup.restore(target, truncated, force=True, log=lambda *a: None)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar file at all" * 100)
    with pytest.raises(backup.BackupError, match="not a usable glint backup"):
        backup.read_manifest(garbage)
