"""Gauges tell the truth at every moment: each is read from /metrics while its condition holds."""

from __future__ import annotations

import asyncio
import re
import uuid

import devstack
from app.background import background_key
from app.main import create_app
from jobs.events import FunctionConsumer
from storage import outbox
from storage.outbox import Event
from tests.conftest import make_config, wait_for
from tests.support import metric, open_socket, user_and_token


async def scrape(client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


async def add_events(pool, count: int, topic: str = "test") -> None:
    async with pool.acquire() as conn, conn.transaction():
        for n in range(count):
            await outbox.add_event(conn, topic, "counted", n, {"n": n})


async def test_ws_connections_is_the_number_of_sockets_open_now(client):
    (_, ana), (_, bob) = await user_and_token(client), await user_and_token(client)
    sockets = [await open_socket(client, ana), await open_socket(client, ana), await open_socket(client, bob)]
    assert metric(await scrape(client), "glint_ws_connections") == 3
    await sockets.pop().close()

    async def two_open() -> bool:
        return metric(await scrape(client), "glint_ws_connections") == 2

    await wait_for(two_open)
    for ws in sockets:
        await ws.close()


async def test_outbox_backlog_counts_the_table_while_the_broker_is_away(aiohttp_client, stack_env, database_url,
                                                                       redis_clean, pool):
    nowhere = f"127.0.0.1:{devstack.free_port()}"  # no broker listens here
    config = make_config(stack_env, database_url=database_url, events_transport="kafka", kafka_bootstrap=nowhere,
                         outbox_poll_seconds=0.2)
    client = await aiohttp_client(create_app(config, consumers=False))
    assert metric(await scrape(client), "glint_outbox_backlog") == 0
    await add_events(pool, 7)
    # the relay keeps failing; the rows wait, and the gauge says how many
    assert metric(await scrape(client), "glint_outbox_backlog") == 7
    await add_events(pool, 3)
    assert metric(await scrape(client), "glint_outbox_backlog") == 10


async def test_consumer_lag_per_partition_while_a_consumer_is_stuck_and_after(aiohttp_client, stack_env, database_url,
                                                                             redis_clean, pool):
    run = uuid.uuid4().hex[:8]
    config = make_config(stack_env, database_url=database_url, events_transport="kafka",
                         kafka_topic_prefix=f"t{run}.", kafka_group_prefix=f"g{run}-", outbox_poll_seconds=0.2)
    gate = asyncio.Event()
    handled: list[int] = []

    async def handle(event: Event) -> None:
        await gate.wait()
        handled.append(event.payload["n"])

    app = create_app(config, consumers=False, extra_consumers=[FunctionConsumer("laggard", ("test",), handle)])
    client = await aiohttp_client(app)
    runner = app[background_key].runners[0]
    await add_events(pool, 1)
    await wait_for(runner.ready.is_set, timeout=60)
    await add_events(pool, 11)
    group = f"g{run}-laggard"

    async def lags() -> dict[str, float]:
        text = await scrape(client)
        return {m.group(1): float(m.group(2)) for m in re.finditer(
            r'^glint_consumer_lag\{group="%s",partition="(\d+)",topic="t%s\.test"\} (\S+)$' % (group, run), text, re.M)}

    async def all_behind() -> bool:  # stuck on the first event: all 12 are behind, spread over partitions
        return sum((await lags()).values()) == 12

    await wait_for(all_behind, timeout=30)
    assert len(await lags()) == 4  # one figure per partition
    gate.set()
    await wait_for(lambda: len(handled) == 12, timeout=30)

    async def caught_up() -> bool:
        return sum((await lags()).values()) == 0

    await wait_for(caught_up, timeout=10)
