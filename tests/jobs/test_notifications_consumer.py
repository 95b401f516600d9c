"""The notifications consumer on its own, over a real Kafka-protocol broker and as two `glint
consume` processes: redelivery makes nothing twice, a broker outage loses nothing, the group shares
the partitions; and the HTTP push sink's retries and dead letters against a local endpoint."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timezone

import aiohttp
from aiohttp import web

import devstack
from app.background import background_key
from app.main import create_app
from jobs.events import Dispatcher
from jobs.notifications import NotificationConsumer
from storage import outbox, sinks
from storage.email import TableSink
from storage.outbox import Event
from storage.sinks import HttpPushSink, TablePushSink
from tests.conftest import make_config, wait_for
from tests.support import ROOT, glint_env, make_users, new_post, start_endpoint, user_with_token, wait_http


def liked(author: int, fan: int, post: int) -> Event:
    return Event(event_id=uuid.uuid4(), topic="posts", type="post_liked", key=str(author),
                 payload={"post_id": str(post), "author_id": str(author), "user_id": str(fan)},
                 created_at=datetime.now(timezone.utc))


def consumer_for(pool, redis) -> NotificationConsumer:
    return NotificationConsumer(pool, redis, TablePushSink(pool), TableSink(pool))


async def test_a_redelivered_event_makes_no_second_notification_nor_push(pool, redis_clean):
    consumer = consumer_for(pool, redis_clean)
    author, fan = await make_users(pool, 2)
    await pool.execute("INSERT INTO push_devices (user_id, endpoint, platform) VALUES ($1, 'https://p.example/1', 'web')",
                       author)
    event = liked(author, fan, 42)
    for _ in range(3):  # as a crash between handling and recording it would redeliver it
        await consumer.handle(event)
    dispatcher = Dispatcher(pool, [consumer])
    await dispatcher.deliver(consumer, event)
    assert await pool.fetchval("SELECT count(*) FROM notification_items") == 1
    assert await pool.fetchval("SELECT item_count FROM notifications") == 1
    assert len(await sinks.sent_pushes(pool, author)) == 1


async def test_likes_handled_at_once_join_one_group(pool, redis_clean):
    consumer = consumer_for(pool, redis_clean)
    author, *fans = await make_users(pool, 13)
    await asyncio.gather(*(consumer.handle(liked(author, fan, 7)) for fan in fans))
    rows = await pool.fetch("SELECT actor_count, item_count FROM notifications")
    assert [(r["actor_count"], r["item_count"]) for r in rows] == [(12, 12)]


async def test_a_redelivered_batch_groups_exactly_once(pool, redis_clean):
    consumer = consumer_for(pool, redis_clean)
    dispatcher = Dispatcher(pool, [consumer])
    author, *fans = await make_users(pool, 6)
    await pool.execute("INSERT INTO push_devices (user_id, endpoint, platform) VALUES ($1, 'https://p.example/b', 'web')",
                       author)
    batch = [liked(author, fan, 7) for fan in fans] + [liked(author, fans[0], 8)]
    # a like and its unlike in one batch: the batch ends as the events one by one would leave it
    unliked = Event(event_id=uuid.uuid4(), topic="posts", type="post_unliked", key=str(author),
                    payload={"post_id": "9", "author_id": str(author), "user_id": str(fans[1])},
                    created_at=datetime.now(timezone.utc))
    batch += [liked(author, fans[1], 9), unliked]
    await dispatcher.deliver_batch(consumer, batch)
    for replay in (batch, batch[2:4] + [liked(author, fans[2], 8)]):  # whole, and partly with a new event
        await dispatcher.deliver_batch(consumer, replay)
    rows = await pool.fetch("SELECT target_id, actor_count, item_count FROM notifications ORDER BY target_id")
    assert [(r["target_id"], r["actor_count"], r["item_count"]) for r in rows] == [(7, 5, 5), (8, 2, 2)]
    assert await pool.fetchval("SELECT count(*) FROM notification_items") == 7
    # a push per item made, as one by one (the like of post 9 was made, and pushed, before its unlike)
    assert len(await sinks.sent_pushes(pool, author)) == 8
    assert await pool.fetchval("SELECT count(*) FROM processed_events WHERE consumer = 'notifications'") == 9


async def test_events_naming_a_missing_actor_are_skipped_not_retried_forever(pool, redis_clean):
    consumer = consumer_for(pool, redis_clean)
    (author,) = await make_users(pool, 1)
    await consumer.handle(liked(author, author, 1))  # yourself
    await consumer.handle(liked(author + 999_999, author, 1))  # a recipient that does not exist
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 0


# ---------------------------------------------------------------- the HTTP push sink


async def test_http_push_retries_then_delivers_forgets_gone_devices_and_dead_letters(pool):
    (user,) = await make_users(pool, 1)
    runner, base, seen = await start_endpoint({
        "flaky": [503, 429, 201], "gone": [410], "down": [500], "refused": [400],
    })
    delays: list[float] = []

    async def no_wait(seconds: float) -> None:
        delays.append(seconds)

    sink = HttpPushSink(pool, timeout=5, max_attempts=3, retry_base=0.1, sleep=no_wait, allow_private=True)
    try:
        devices = {}
        for name in ("flaky", "gone", "down", "refused"):
            devices[name] = await pool.fetchrow(
                "INSERT INTO push_devices (user_id, endpoint, platform) VALUES ($1, $2, 'web') RETURNING *",
                user, base + name)
        payload = {"title": "glint", "body": "ana liked your post"}
        for device in devices.values():
            await sink.send(device, payload)
        unreachable = {"id": 0, "user_id": user, "endpoint": "http://127.0.0.1:1/push/none"}
        await sink.send(unreachable, payload)
    finally:
        await runner.cleanup()
    assert len(seen["flaky"]) == 3 and seen["flaky"][-1]["body"] == payload and seen["flaky"][0]["ttl"]
    assert len(seen["gone"]) == 1 and len(seen["down"]) == 3 and len(seen["refused"]) == 1
    assert delays[:2] == [0.1, 0.2]  # exponential back-off
    remaining = {r["endpoint"] for r in await pool.fetch("SELECT endpoint FROM push_devices")}
    assert base + "gone" not in remaining and base + "flaky" in remaining
    letters = await sinks.dead_letters(pool, user)
    assert [(r["endpoint"].rsplit("/", 1)[1], r["attempts"]) for r in letters] == [("down", 3), ("refused", 1), ("none", 3)]
    assert letters[0]["error"].startswith("HTTP 500") and letters[0]["payload"] == payload


# ---------------------------------------------------------------- over Kafka


def kafka_names() -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {"kafka_topic_prefix": f"n{run}.", "kafka_group_prefix": f"n{run}-"}


async def test_while_the_broker_is_down_likes_are_accepted_and_each_notification_appears_once_it_is_back(
        aiohttp_client, stack_env, stack_root, database_url, redis_clean, pool):
    config = make_config(stack_env, database_url=database_url, events_transport="kafka", outbox_poll_seconds=0.2,
                         **kafka_names())
    app = create_app(config)
    client = await aiohttp_client(app)
    [runner] = [r for r in app[background_key].runners if r.consumer.name == "notifications"]
    author, ah = await user_with_token(client)
    fans = [await user_with_token(client) for _ in range(4)]
    post = await new_post(client, ah)
    response = await client.post(f"/api/posts/{post['id']}/like/", headers=fans[0][1])
    assert response.status == 200
    await wait_for(runner.ready.is_set, timeout=60)
    await wait_for(lambda: _count(pool, "SELECT count(*) FROM notification_items", 1), timeout=60)

    devstack.stop_service(stack_root, "kafka", log=lambda *a: None)
    try:
        second = await new_post(client, ah)
        for fan, headers in fans[1:]:
            for target in (post, second):
                response = await client.post(f"/api/posts/{target['id']}/like/", headers=headers)
                assert response.status == 200  # accepted: the event waits in the outbox
        assert await outbox.backlog(pool) >= 1
    finally:
        devstack.start_service(stack_root, "kafka", log=lambda *a: None)

    expected = 1 + 2 * 3
    await wait_for(lambda: _count(pool, "SELECT count(*) FROM notification_items", expected), timeout=120)
    await wait_for(lambda: _count(pool, "SELECT count(*) FROM outbox WHERE sent_at IS NULL", 0), timeout=30)
    response = await client.get("/api/notifications/", headers=ah)
    listed = (await response.json())["results"]
    assert sorted((n["target"]["id"], n["actor_count"], n["count"]) for n in listed) == sorted(
        [(post["id"], 4, 4), (second["id"], 3, 3)])
    likes = await pool.fetchval("SELECT count(*) FROM outbox WHERE type = 'post_liked'")
    assert likes == expected == await pool.fetchval("SELECT count(DISTINCT event_id) FROM notification_items")


async def _count(pool, sql: str, expected: int) -> bool:
    return await pool.fetchval(sql) == expected


async def _handled(session: aiohttp.ClientSession, port: int) -> float:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    found = re.search(r'^glint_events_handled_total\{consumer="notifications"\} ([0-9.e+]+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_two_consume_processes_share_the_partitions_and_handle_each_event_once_in_effect(
        stack_env, database_url, redis_clean, pool):
    names = kafka_names()
    env = glint_env(stack_env, GLINT_DATABASE_URL=database_url)
    env.update(GLINT_EVENTS_TRANSPORT="kafka", GLINT_KAFKA_TOPIC_PREFIX=names["kafka_topic_prefix"],
               GLINT_KAFKA_GROUP_PREFIX=names["kafka_group_prefix"], GLINT_JOBS_ENABLED="false",
               GLINT_OUTBOX_POLL_SECONDS="0.2", GLINT_LOG_LEVEL="WARNING")
    authors = await make_users(pool, 8)
    fans = await make_users(pool, 6)
    ports = [devstack.free_port(), devstack.free_port()]
    logs = [tempfile.TemporaryFile() for _ in ports]
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "consume", "--port", str(port), cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=log) for port, log in zip(ports, logs)]
    sent = 0
    post_ids = itertools.count(1000)
    try:
        for proc, port in zip(procs, ports):
            await wait_http(f"http://127.0.0.1:{port}/healthz", proc)

        async def emit(count: int) -> None:
            nonlocal sent
            async with pool.acquire() as conn, conn.transaction():
                for _ in range(count):
                    author = authors[sent % len(authors)]  # keys spread over the partitions
                    post = next(post_ids)
                    await outbox.add_event(conn, "posts", "post_liked", author, {
                        "post_id": str(post), "author_id": str(author), "user_id": str(fans[sent % len(fans)])})
                    sent += 1

        # keep events coming until both processes have handled some: the group has rebalanced
        # over both (a join takes ~5 s, a rebalance ~11 s on Tansu)
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 150
            while True:
                await emit(8)
                counts = [await _handled(session, port) for port in ports]
                if all(c > 0 for c in counts):
                    break
                assert loop.time() < deadline, f"the partitions were never shared: {counts}"
                await asyncio.sleep(0.5)
            await emit(40)
            await wait_for(lambda: _count(pool, "SELECT count(*) FROM notification_items", sent), timeout=120)
            counts = [await _handled(session, port) for port in ports]
        assert all(c > 0 for c in counts)
        # each event made exactly one item and each post one notification, whoever handled it
        assert await pool.fetchval("SELECT count(DISTINCT event_id) FROM notification_items") == sent
        assert await pool.fetchval("SELECT count(*) FROM notifications") == sent
        assert await pool.fetchval("SELECT max(item_count) FROM notifications") == 1
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 60)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for log in logs:
            log.close()
