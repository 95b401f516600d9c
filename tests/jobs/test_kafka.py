"""The event backbone over a real Kafka-protocol broker (Tansu): nothing is lost while it is down."""

from __future__ import annotations

import uuid

import devstack
from app.background import background_key
from app.main import create_app
from jobs.events import FunctionConsumer
from storage import outbox
from storage.outbox import Event
from tests.conftest import make_config, wait_for


async def test_events_added_while_the_broker_is_down_are_all_consumed_once_it_is_back(
        aiohttp_client, stack_env, stack_root, database_url, redis_clean, pool):
    run = uuid.uuid4().hex[:8]
    config = make_config(stack_env, database_url=database_url, events_transport="kafka",
                         kafka_topic_prefix=f"t{run}.", kafka_group_prefix=f"g{run}-",
                         outbox_poll_seconds=0.2)
    effects: list[int] = []
    attempts: dict[str, int] = {}

    async def handle(event: Event) -> None:
        key = str(event.event_id)
        attempts[key] = attempts.get(key, 0) + 1
        if event.payload["n"] == 0 and attempts[key] <= 2:
            raise RuntimeError("transient failure")  # fails twice, then succeeds
        effects.append(event.payload["n"])

    app = create_app(config, extra_consumers=[FunctionConsumer("counter", ("test",), handle)])
    await aiohttp_client(app)
    runner = app[background_key].runners[0]

    async def add(n: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add_event(conn, "test", "counted", n % 3, {"n": n})

    await add(0)
    await wait_for(runner.ready.is_set, timeout=60)
    await wait_for(lambda: effects == [0], timeout=60)
    assert attempts and max(attempts.values()) == 3

    devstack.stop_service(stack_root, "kafka", log=lambda *a: None)
    try:
        for n in range(1, 11):
            await add(n)
        # the broker is away: the rows wait in the outbox, nothing is lost
        assert await outbox.backlog(pool) >= 1
    finally:
        devstack.start_service(stack_root, "kafka", log=lambda *a: None)

    await wait_for(lambda: len(effects) >= 11, timeout=120)
    await wait_for(lambda: _backlog_is(pool, 0), timeout=30)
    assert sorted(effects) == list(range(11))
    assert len(effects) == len(set(effects))


async def _backlog_is(pool, n: int) -> bool:
    return await outbox.backlog(pool) == n
