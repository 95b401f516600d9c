"""glint on a 3-primary Valkey cluster: the same timeline, cache, presence, rate-limit and bus code
as on one node, with the keys of different users on different primaries and the per-user bus
channels as shard channels (SSUBSCRIBE/SPUBLISH)."""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster

from app.main import create_app
from handlers.context import config_key, redis_key, timelines_key
from realtime.bus import Bus
from realtime.gateway import gateway_key
from storage.cluster import is_cluster, slot_groups
from storage.posts import post_cache_key
from storage.stories import TrayCache
from storage.timelines import Timelines
from tests.conftest import make_config, wait_for
from tests.support import (bearer, feed_ids, follow, frame_of, in_timeline, login, new_post, open_socket, register,
                           start_conversation, user_and_token, user_with_token)

pytestmark = pytest.mark.parametrize("redis_target", ["cluster"], indirect=True)


def primaries_holding(redis: RedisCluster, keys: list[str]) -> set[str]:
    return {redis.get_node_from_key(key).name for key in keys}


async def test_the_app_runs_on_the_cluster_it_is_configured_with(client, redis_clean):
    app = client.app
    assert app[config_key].redis.url.startswith("redis+cluster://")
    assert is_cluster(app[redis_key]) and len(app[redis_key].get_primaries()) == 3
    assert app[gateway_key].bus.sharded
    # GLINT_REDIS_CLUSTER=1 with a plain URL chooses the cluster as well
    plain = app[config_key].redis.url.replace("redis+cluster://", "redis://")
    from app.clients import open_redis

    other = open_redis(make_config({"GLINT_REDIS_URL": plain, "GLINT_REDIS_CLUSTER": "1"}))
    try:
        assert is_cluster(other) and await other.ping()
    finally:
        await other.aclose()


async def test_fan_out_rebuild_celebrity_merge_and_the_post_cache_across_primaries(
        aiohttp_client, stack_env, config, redis_clean):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         redis_url=config.redis.url, celebrity_threshold=2)))
    (fan, fan_h), (other, other_h) = [await user_with_token(client) for _ in range(2)]
    author, author_h = await user_with_token(client)
    star, star_h = await user_with_token(client)
    for headers in (fan_h, other_h):
        await follow(client, headers, star)  # two followers: a celebrity, merged at read time
    await follow(client, fan_h, author)  # one: fanned out
    for headers in (fan_h, author_h, star_h):
        await feed_ids(client, headers)  # the timelines are built

    post = await new_post(client, author_h, "to my followers")
    for user in (author, fan):
        await wait_for(lambda: in_timeline(redis_clean, user, post["id"]))
    celebrity = await new_post(client, star_h, "to the masses")
    await wait_for(lambda: in_timeline(redis_clean, star, celebrity["id"]))
    assert not await in_timeline(redis_clean, fan, celebrity["id"])  # not fanned out...
    assert await feed_ids(client, fan_h) == [celebrity["id"], post["id"]]  # ...but merged

    # the bodies were hydrated once and cached, one entry per post, each on its own slot
    assert await redis_clean.exists(post_cache_key(int(post["id"])), post_cache_key(int(celebrity["id"]))) == 2
    # an edit drops the cached body, so the next read shows it at once
    await client.patch(f"/api/posts/{post['id']}/", json={"caption": "edited"}, headers=author_h)
    # a lost timeline is rebuilt from PostgreSQL on the next read, never shown empty
    await client.app[timelines_key].drop_home(int(fan["id"]))
    shown = (await (await client.get("/api/posts/feed/", headers=fan_h)).json())["results"]
    assert [(p["id"], p["caption"]) for p in shown] == [(celebrity["id"], "to the masses"), (post["id"], "edited")]
    assert await in_timeline(redis_clean, fan, post["id"])
    # the other follower follows only the celebrity: their timeline, built now, has only its post
    assert await feed_ids(client, other_h) == [celebrity["id"]]


async def test_one_push_reaches_timelines_on_every_primary(redis_clean):
    timelines = Timelines(redis_clean, cap=2)
    users = range(1, 40)
    assert len(primaries_holding(redis_clean, [Timelines.key(u) for u in users])) == 3
    for user in users[:30]:
        await timelines.store_home(user, [])
    await redis_clean.script_flush()  # a primary that lost its scripts (a restart) loads them again
    assert await timelines.push_to_home(list(users), [101, 102, 103], chunk=16) == 30
    assert await timelines.read_home(7, None, 10) == [103, 102]
    assert await timelines.read_home(35, None, 10) is None


async def test_story_trays_of_many_viewers_are_dropped_across_slots(redis_clean):
    trays = TrayCache(redis_clean, ttl_seconds=60)
    for viewer in range(1, 30):
        await trays.store(viewer, b"tray")
    await trays.drop(range(1, 20), chunk=8)
    assert [await trays.read(v) for v in (1, 19, 20, 29)] == [None, None, b"tray", b"tray"]


async def test_rate_limits_and_revocation_markers_share_the_users_slot(aiohttp_client, stack_env, config,
                                                                       redis_clean):
    client = await aiohttp_client(create_app(make_config(stack_env, database_url=config.database.url,
                                                         redis_url=config.redis.url, rate_limit_per_hour=6)))
    user = await register(client)
    kept, revoked = await login(client, user["username"]), await login(client, user["username"])
    assert (await client.get("/api/accounts/users/me/", headers=bearer(revoked["access"]))).status == 200
    assert (await client.post("/api/token/revoke/", json={"refresh": revoked["refresh"]})).status == 204
    # the limiter's one script reads the session's revocation marker beside the user's counter
    assert (await client.get("/api/accounts/users/me/", headers=bearer(revoked["access"]))).status == 401
    statuses = [(await client.get("/api/accounts/users/me/", headers=bearer(kept["access"]))).status
                for _ in range(6)]
    assert statuses[0] == 200 and statuses[-1] == 429


async def test_presence_and_messages_cross_two_app_instances_on_shard_channels(aiohttp_client, config, redis_clean):
    one, two = await aiohttp_client(create_app(config)), await aiohttp_client(create_app(config))
    (ana, ana_token), *others = [await user_and_token(one) for _ in range(2)]
    conversation = await start_conversation(one, ana_token, *(u["id"] for u, _ in others))

    ana_ws = await open_socket(one, ana_token)
    await ana_ws.send_json({"type": "presence.subscribe", "user_ids": [u["id"] for u, _ in others]})
    for user, _ in others:
        assert (await frame_of(ana_ws, "presence", user_id=user["id"]))["status"] == "offline"
    sockets = []
    for user, token in others:
        sockets.append(await open_socket(two, token))
        assert (await frame_of(ana_ws, "presence", user_id=user["id"]))["status"] == "online"
    assert await one.app[gateway_key].presence.count_connections() == 2  # a SCAN over every primary
    # the heartbeat sweep reads each socket's auth markers (an MGET within the user's slot) and
    # pushes presence forward, in one cluster pipeline: nothing is revoked, every socket stays
    await two.app[gateway_key].check_connections()
    assert all(not ws.closed for ws in sockets)

    await ana_ws.send_json({"type": "message.send", "ref": 1, "conversation_id": conversation["id"],
                            "client_id": "c1", "text": "across the cluster"})
    ack = await frame_of(ana_ws, "message.ack")
    for ws in sockets:  # on instance two, through the user's shard channel
        assert (await frame_of(ws, "message.new"))["message"] == ack["message"]
    response = await two.post(f"/api/conversations/{conversation['id']}/messages/",
                              json={"client_id": "c2", "text": "and back"}, headers=bearer(others[0][1]))
    assert response.status == 201
    assert (await frame_of(ana_ws, "message.new"))["message"]["text"] == "and back"

    await sockets[0].close()
    offline = await frame_of(ana_ws, "presence", user_id=others[0][0]["id"])
    assert offline["status"] == "offline" and offline["last_seen"]


async def test_the_bus_holds_one_shard_connection_per_primary_and_reads_each_at_once(redis_clean):
    received: list[tuple[bytes, bytes]] = []
    confirmed: list[bytes] = []

    class Reconnects:  # redis-py holds connect callbacks as weak bound methods
        count = 0

        async def note(self, connection) -> None:
            self.count += 1

    reconnects = Reconnects()
    bus = Bus(redis_clean, on_message=lambda channel, data: received.append((channel, data)),
              on_subscribed=confirmed.append, on_reconnect=reconnects.note)
    await bus.start("proc:test")
    try:
        channels = [f"u:{n}" for n in range(1, 13)]
        assert len(primaries_holding(redis_clean, channels)) == 3
        for channel in channels:
            await bus.subscribe(channel)
        await wait_for(lambda: len(confirmed) == len(channels))
        assert len(bus._shards) == 3
        async with redis_clean.pipeline(transaction=False) as pipe:
            for channel in channels:
                bus.queue_publish(pipe, channel, channel.encode())
            assert await pipe.execute() == [1] * len(channels)  # one subscriber each: this process
        await wait_for(lambda: len(received) == len(channels))
        assert sorted(received) == sorted((c.encode(), c.encode()) for c in channels)

        # every shard connection is cut: each comes back with its channels (one SSUBSCRIBE per
        # slot, as the server wants) and the gateway is told to resync
        await redis_clean.execute_command("CLIENT KILL", "TYPE", "pubsub", target_nodes=RedisCluster.PRIMARIES)
        await wait_for(lambda: reconnects.count == 3)
        received.clear()
        for channel in channels:
            await wait_for(lambda: bus.publish(channel, b"again"))
        await wait_for(lambda: len(received) == len(channels))
        # a primary left with no channel stands idle, and its reader wakes for the next one
        for channel in channels:
            await bus.unsubscribe(channel)
        assert await bus.publish("u:1", b"gone") == 0
        await bus.subscribe("u:1")
        await wait_for(lambda: confirmed.count(b"u:1") == 2)
        assert await bus.publish("u:1", b"back") == 1
        await wait_for(lambda: received[-1] == (b"u:1", b"back"))
    finally:
        await bus.close()
