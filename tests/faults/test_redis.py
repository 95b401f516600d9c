"""Redis restarted empty: feeds are rebuilt from PostgreSQL, a revoked session stays refused (its
truth is the sessions table), and every open socket is told to resync once the bus is back."""

from __future__ import annotations

from app.main import create_app
from tests.conftest import wait_for
from tests.faults.conftest import fault_config, stopped
from tests.support import feed_ids, follow, frame_of, login, new_post, open_socket, user_with_token


async def test_redis_restarted_empty_rebuilds_feeds_keeps_revocations_and_resyncs_sockets(
        aiohttp_client, stack_env, stack_root, database_url, redis_clean):
    client = await aiohttp_client(create_app(fault_config(stack_env, database_url)))
    author, author_h = await user_with_token(client)
    followers = [await user_with_token(client) for _ in range(3)]
    for _, headers in followers:
        await follow(client, headers, author)
        await feed_ids(client, headers)
    post = await new_post(client, author_h, "before the restart")
    for _, headers in followers:
        await wait_for(lambda h=headers: _has(client, h, post["id"]), timeout=15)
    # a second session of the author, logged out
    other = await login(client, author["username"])
    other_h = {"Authorization": f"Bearer {other['access']}"}
    sessions = (await (await client.get("/api/accounts/sessions/", headers=author_h)).json())["results"]
    [revoked] = [s for s in sessions if not s["current"]]
    assert (await client.delete(f"/api/accounts/sessions/{revoked['id']}/", headers=author_h)).status == 204
    assert (await client.get("/api/accounts/users/me/", headers=other_h)).status == 401
    ws = await open_socket(client, author_h["Authorization"].split()[1])

    with stopped(stack_root, "redis"):  # the test stack's Valkey keeps nothing: it comes back empty
        assert (await client.get("/api/accounts/users/me/", headers=author_h)).status == 503

    async def answers() -> bool:
        return (await client.get("/api/accounts/users/me/", headers=author_h)).status == 200

    await wait_for(answers, timeout=15)
    assert (await client.get("/api/accounts/users/me/", headers=other_h)).status == 401  # still revoked
    for _, headers in followers:
        assert await feed_ids(client, headers) == [post["id"]]  # rebuilt from PostgreSQL
    assert (await frame_of(ws, "resync", timeout=15))["reason"] == "bus"
    await ws.close()


async def _has(client, headers, post_id: str) -> bool:
    return post_id in await feed_ids(client, headers)
