"""The event backbone with the inline transport: outbox, relay, dedupe, retries, dead letters."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

from app.background import background_key
from app.main import create_app
from jobs.events import Dispatcher, FunctionConsumer
from storage import outbox
from storage.outbox import Event
from tests.conftest import wait_for


def recording_consumer(name: str = "recorder", fail_times: int = 0):
    """A consumer that records each event's effect once, after failing `fail_times` times per event."""
    effects: list[str] = []
    attempts: dict[str, int] = {}

    async def handle(event: Event) -> None:
        key = str(event.event_id)
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] <= fail_times:
            raise RuntimeError(f"failure {attempts[key]}")
        effects.append(event.payload["n"])

    return FunctionConsumer(name, ("test",), handle), effects, attempts


async def add(pool, n: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await outbox.add_event(conn, "test", "thing_happened", n, {"n": n})


async def test_an_event_in_a_rolled_back_transaction_is_never_published(aiohttp_client, config, pool):
    consumer, effects, _ = recording_consumer()
    await aiohttp_client(create_app(config, extra_consumers=[consumer]))
    try:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add_event(conn, "test", "thing_happened", 1, {"n": "rolled back"})
            raise LookupError("abort")
    except LookupError:
        pass
    await add(pool, "committed")
    await wait_for(lambda: effects == ["committed"])
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_committed_events_reach_the_consumer_in_order_and_are_marked_sent(aiohttp_client, config, pool):
    consumer, effects, _ = recording_consumer()
    await aiohttp_client(create_app(config, extra_consumers=[consumer]))
    for n in range(20):
        await add(pool, n)
    await wait_for(lambda: len(effects) == 20)
    assert effects == list(range(20))
    await wait_for(lambda: _backlog_is(pool, 0))


async def test_a_handler_that_fails_twice_then_succeeds_has_its_effect_once(aiohttp_client, config, pool):
    consumer, effects, attempts = recording_consumer(fail_times=2)
    app = create_app(config, extra_consumers=[consumer])
    await aiohttp_client(app)
    await add(pool, "once")
    await wait_for(lambda: effects == ["once"])
    assert list(attempts.values()) == [3]
    # redelivering the same event (as Kafka may after a rebalance) does nothing
    row = await pool.fetchrow("SELECT event_id, topic, type, key, payload, created_at FROM outbox")
    event = Event(**dict(row))
    await app[background_key].dispatcher.dispatch(event)
    assert effects == ["once"]


async def test_an_event_that_keeps_failing_becomes_a_dead_letter_and_the_stream_moves_on(pool):
    async def always_fail(event: Event) -> None:
        if event.payload["n"] == "poison":
            raise ValueError("cannot handle")
        handled.append(event.payload["n"])

    handled: list[str] = []
    consumer = FunctionConsumer("fragile", ("test",), always_fail)
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    dispatcher = Dispatcher(pool, [consumer], max_attempts=3, retry_base=0.1, sleep=no_sleep)
    poison = Event(event_id=uuid.uuid4(), topic="test", type="x", key="1", payload={"n": "poison"},
                   created_at=datetime.now(timezone.utc))
    fine = Event(event_id=uuid.uuid4(), topic="test", type="x", key="1", payload={"n": "fine"},
                 created_at=datetime.now(timezone.utc))
    assert await dispatcher.deliver(consumer, poison) is False
    assert await dispatcher.deliver(consumer, fine) is True
    assert handled == ["fine"]
    assert sleeps == [0.1, 0.2]  # exponential back-off between attempts
    dead = await pool.fetchrow("SELECT consumer, kind, event, next_attempt_at FROM dead_letters")
    assert dead["consumer"] == "fragile"
    assert dead["event"]["payload"] == {"n": "poison"}
    # a bad event (not a store being away) waits for an operator: never replayed by itself
    assert (dead["kind"], dead["next_attempt_at"]) == ("bad_event", None)
    # the poison event is not retried forever
    assert await dispatcher.deliver(consumer, poison) is True


async def test_only_one_relay_at_a_time_takes_the_outbox(config, pool):
    consumer, effects, _ = recording_consumer()
    dispatcher = Dispatcher(pool, [consumer])
    from jobs.events import InlineSender, Relay

    relays = [Relay(pool, InlineSender(dispatcher), batch=5) for _ in range(3)]
    for n in range(30):
        await add(pool, n)
    await asyncio.gather(*(r.drain() for r in relays))
    while await relays[0].drain():
        pass
    assert sorted(effects) == list(range(30))
    assert len(effects) == 30


async def _backlog_is(pool, n: int) -> bool:
    return await outbox.backlog(pool) == n


def test_a_consumer_handles_a_family_of_events_by_its_base_unless_it_has_its_own_handler():
    """A new hiding rule is one more KeptApart subclass (and its lifting a KeptApartNoMore): the
    feed and notifications consumers already act on it through the family's handler, by what its
    class settings say; a handler of the type's own comes first."""
    import events
    from jobs.feed import FeedConsumer
    from jobs.events import handler_for
    from jobs.notifications import NotificationConsumer

    kept_apart = [t for t, cls in events.CATALOGUE.items() if issubclass(cls, events.KeptApart)]
    assert {"user_blocked", "user_muted"} <= set(kept_apart)
    for consumer in (FeedConsumer, NotificationConsumer):
        for event_type in kept_apart:
            assert handler_for(consumer, event_type) is consumer.on_kept_apart
    assert handler_for(FeedConsumer, "user_unmuted") is FeedConsumer.on_kept_apart_no_more
    assert handler_for(NotificationConsumer, "user_unmuted") is None
    assert handler_for(FeedConsumer, "follow_created") is FeedConsumer.on_follow_created

    class OwnHandler:
        async def on_kept_apart(self, e): ...
        async def on_user_blocked(self, e): ...
    assert handler_for(OwnHandler, "user_blocked") is OwnHandler.on_user_blocked
    assert handler_for(OwnHandler, "user_muted") is OwnHandler.on_kept_apart
    assert handler_for(FeedConsumer, "story_created") is None and handler_for(FeedConsumer, "no_such_type") is None
    assert events.UserBlocked.both_ways and events.UserBlocked.forgets_notifications
    assert not events.UserMuted.both_ways and not events.UserMuted.forgets_notifications
