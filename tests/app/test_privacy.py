"""Account privacy: login timing and lock-out, media in direct messages, presigned links that
expire and stop with their post, and the security headers on every response."""

from __future__ import annotations

import statistics
import time

import aiohttp

from app.main import create_app
from handlers.context import config_key
from tests.conftest import make_config
from tests.support import bearer, new_media, new_post, register, start_conversation, user_and_token


async def test_login_takes_as_long_for_an_unknown_account_as_for_a_wrong_password(client, production_hashing):
    user = await register(client)

    async def timed(username: str) -> float:
        started = time.perf_counter()
        response = await client.post("/api/token/", json={"username": username, "password": "wrong password"})
        assert response.status == 401
        return time.perf_counter() - started

    known = statistics.median([await timed(user["username"]) for _ in range(3)])
    unknown = statistics.median([await timed(f"nobody{i}") for i in range(3)])
    assert unknown > known * 0.4, (known, unknown)


async def test_a_stranger_hammering_a_login_does_not_lock_its_owner_out(aiohttp_client, stack_env, config):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         rate_limit_auth_per_minute=3)))
    victim = await register(client)
    url = f"http://{client.server.host}:{client.server.port}/api/token/"

    async def login_from(address: str, password: str) -> int:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0))) as session:
            async with session.post(url, json={"username": victim["username"], "password": password}) as response:
                return response.status

    attempts = [await login_from("127.0.0.2", "guessing") for _ in range(4)]
    assert attempts[-1] == 429
    assert await login_from("127.0.0.3", "correct horse battery") == 200


async def test_media_sent_in_a_message_is_readable_by_every_member_and_marked_used(client, pool):
    (ana, ana_token), (bob, bob_token), (cy, cy_token) = [await user_and_token(client) for _ in range(3)]
    conv = await start_conversation(client, ana_token, bob["id"])
    (media_id,) = await new_media(client, bearer(ana_token))
    sent = await client.post(f"/api/conversations/{conv['id']}/messages/",
                             json={"client_id": "pic", "media_id": media_id}, headers=bearer(ana_token))
    assert sent.status == 201
    seen = await client.get(f"/api/media/{media_id}/", headers=bearer(bob_token))
    assert seen.status == 200 and (await seen.json())["renditions"]
    assert (await client.get(f"/api/media/{media_id}/", headers=bearer(cy_token))).status == 404
    assert await pool.fetchval("SELECT attached_at IS NOT NULL FROM media WHERE id = $1", int(media_id))
    reused = await client.post("/api/posts/", json={"caption": "again", "media_ids": [media_id]},
                               headers=bearer(ana_token))
    assert reused.status == 400


async def test_media_links_expire_with_their_window_and_stop_when_the_post_is_deleted(client):
    _, token = await user_and_token(client)
    post = await new_post(client, bearer(token), "soon gone")
    media = post["media"][0]
    url = client.make_url(media["url"] + next(iter(media["renditions"])))
    expires = int(media["url"].split("/")[4])
    assert time.time() < expires <= time.time() + client.app[config_key].s3.url_ttl
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200
        assert (await client.delete(f"/api/posts/{post['id']}/", headers=bearer(token))).status == 204
        async with session.get(url) as response:
            assert response.status in (403, 404)


async def test_every_response_carries_the_security_headers(client):
    _, token = await user_and_token(client)
    me = await client.get("/api/accounts/users/me/", headers=bearer(token))
    assert me.status == 200
    assert me.headers["X-Content-Type-Options"] == "nosniff"
    assert me.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in me.headers["Content-Security-Policy"]
    assert me.headers["Referrer-Policy"] == "no-referrer" and me.headers["X-Frame-Options"] == "DENY"
    for response in (await client.get("/api/nothing/"), await client.get("/healthz"),
                     await client.get("/api/posts/", headers={"Authorization": "Bearer nonsense"})):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    docs = await client.get("/api/docs/")
    assert "default-src 'none'" in docs.headers["Content-Security-Policy"]
    assert "script-src" not in docs.headers["Content-Security-Policy"]
