"""The event backbone at run time: the outbox relay and the consumer runtime.

Committed outbox rows are relayed either to Kafka (transport "kafka": acks=all, keyed by the
aggregate id so one aggregate's events stay in order, marked sent only once every send in the
batch is acknowledged) or straight to the in-process consumers (transport "inline"). Either way a
consumer sees each event at least once; the runtime dedupes by event id, retries a failing handler
with back-off, and after the last attempt records the event as a dead letter instead of blocking
its partition. A consumer that can take a whole batch (`BatchConsumer`) gets each fetched batch in
one transaction: deduped in one query, handled, and recorded as handled in one statement before
the commit, so a redelivered batch changes nothing; should the batch fail, its events are
delivered one by one as above, so a bad event shares its fate with no other. A dead letter is
kept in PostgreSQL (storage/deadletters.py): when a store being away caused it, the replayer here
hands it to the consumer again once the store is back, backed off between tries; a bad event
waits for `glint events dead-letters replay`. Kafka partitions are shared among a consumer's
processes by leases in PostgreSQL (storage/leases.py), so a process consumes from its first
second instead of after a group join.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from contextlib import nullcontext
from typing import Any, Awaitable, Callable, ContextManager, Protocol, runtime_checkable

import asyncpg
import msgspec
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind
from prometheus_client import Counter, Gauge, Histogram

from events import CATALOGUE, EventBody
from storage import deadletters, faults, leases, outbox
from storage.outbox import Event
from storage.tracecontext import context_of

EVENTS_PUBLISHED = Counter("glint_events_published_total", "Events relayed from the outbox", ["topic"])
CONSUMER_LAG = Gauge("glint_consumer_lag", "Messages behind the end of a partition", ["topic", "partition", "group"])
EVENTS_HANDLED = Counter("glint_events_handled_total", "Events a consumer handled", ["consumer"])
HANDLER_FAILURES = Counter("glint_event_handler_failures_total", "Failed attempts to handle an event", ["consumer"])
DEAD_LETTERS = Counter("glint_dead_letters_total", "Events given up on after every retry", ["consumer"])
DEAD_LETTER_REPLAYS = Counter("glint_dead_letter_replays_total", "Dead-letter replays", ["consumer", "outcome"])
EVENT_LAG = Histogram(
    "glint_event_lag_seconds", "From an event's commit to a consumer having handled it", ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
STORE_ERRORS = Counter("glint_store_errors_total", "Failed calls to a store, by store", ["store"])


def count_store_error(exc: BaseException, default: str | None = None) -> None:
    """Count a failed store call (a plain OSError is counted under `default`, when given); the
    request path counts its failures here too."""
    store = faults.store_of(exc) or (default if isinstance(exc, OSError) else None)
    if store is not None:
        STORE_ERRORS.labels(store).inc()


log = logging.getLogger("glint.events")
tracer = trace.get_tracer("glint.events")


class Consumer(Protocol):
    """One consumer: a name (its Kafka group), the topics it reads and an idempotent handler."""

    name: str
    topics: tuple[str, ...]

    async def handle(self, event: Event) -> None: ...


@runtime_checkable
class BatchConsumer(Consumer, Protocol):
    """A consumer that handles a batch of fresh events inside the runtime's transaction on `conn`
    (its writes commit with the record that the events were handled) and returns its side
    effects (publishing, push) to run after the commit."""

    async def handle_batch(self, conn: asyncpg.Connection, events: list[Event]) -> Callable[[], Awaitable[None]]: ...


def handler_for(consumer: object, event_type: str) -> Callable[..., Awaitable[Any]] | None:
    """The consumer's handler for an event type: its `on_<type>`, else the handler of the nearest
    family the type belongs to (a base Struct of the catalogue, snake-cased: `KeptApart` is
    `on_kept_apart`), so one handler can serve every kind of, say, hiding rule; None when the
    consumer does not care."""
    own = getattr(consumer, f"on_{event_type}", None)
    if own is not None:
        return own
    for family in getattr(CATALOGUE.get(event_type), "__mro__", ())[1:]:
        if family is EventBody:
            break
        name = "".join("_" + c.lower() if c.isupper() else c for c in family.__name__).lstrip("_")
        shared = getattr(consumer, f"on_{name}", None)
        if shared is not None:
            return shared
    return None


@dataclass
class FunctionConsumer:
    """A consumer made from a plain coroutine function."""

    name: str
    topics: tuple[str, ...]
    fn: Callable[[Event], Awaitable[None]]

    async def handle(self, event: Event) -> None:
        await self.fn(event)


@dataclass
class Dispatcher:
    """Delivers events to consumers: dedupe by event id, retries with back-off, dead letters."""

    pool: asyncpg.Pool
    consumers: list[Consumer]
    max_attempts: int = 5
    retry_base: float = 0.2
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    replay_base: float = 5.0  # a dead letter an outage caused is first replayed this long after

    def for_topic(self, topic: str) -> list[Consumer]:
        """The consumers that read a topic."""
        return [c for c in self.consumers if topic in c.topics]

    async def deliver(self, consumer: Consumer, event: Event) -> bool:
        """Run the consumer's handler for the event once in effect; False if it was dead-lettered.
        Its span continues the trace of the request that wrote the event."""
        with event_span(consumer, event):
            return await self._deliver(consumer, event)

    async def deliver_batch(self, consumer: Consumer, events: list[Event]) -> None:
        """Deliver a batch of events to one consumer, in order: in one transaction for a
        BatchConsumer (falling back to one by one should it fail), one by one for the others."""
        if not events:
            return
        if not isinstance(consumer, BatchConsumer):
            for event in events:
                await self.deliver(consumer, event)
            return
        if len(events) == 1:
            span = event_span(consumer, events[0])
        else:  # a batch span, linked to the trace of each event in it
            links = [Link(c) for c in (trace.get_current_span(context_of(e.traceparent)).get_span_context()
                                       for e in events if e.traceparent) if c.is_valid]
            span = tracer.start_as_current_span(f"{consumer.name} batch", kind=SpanKind.CONSUMER, links=links,
                                                attributes={"glint.consumer": consumer.name,
                                                            "messaging.batch.message_count": len(events)})
        with span:
            try:
                fresh, after = await self._handle_batch(consumer, events)
            except Exception as exc:  # one by one: retries and dead letters per event, as for any consumer
                HANDLER_FAILURES.labels(consumer.name).inc()
                count_store_error(exc)
                log.warning("consumer %s failed on a batch of %d, delivering its events one by one: %r",
                            consumer.name, len(events), exc)
                for event in events:
                    await self._deliver(consumer, event)
                return
            now = time.time()
            for event in fresh:
                EVENTS_HANDLED.labels(consumer.name).inc()
                EVENT_LAG.labels(consumer.name).observe(max(now - event.created_at.timestamp(), 0.0))
            await after()

    async def _handle_batch(self, consumer: BatchConsumer,
                            events: list[Event]) -> tuple[list[Event], Callable[[], Awaitable[None]]]:
        async with self.pool.acquire() as conn, conn.transaction():
            ids = list(dict.fromkeys(e.event_id for e in events))
            todo = await outbox.unprocessed_txn(conn, consumer.name, ids)
            fresh = []
            for event in events:  # once each, in order (a batch may hold an event twice)
                if event.event_id in todo:
                    todo.discard(event.event_id)
                    fresh.append(event)
            after = await consumer.handle_batch(conn, fresh) if fresh else _nothing
            await outbox.mark_processed_many_txn(conn, consumer.name, [e.event_id for e in fresh])
        return fresh, after

    async def _deliver(self, consumer: Consumer, event: Event) -> bool:
        if await outbox.was_processed(self.pool, consumer.name, event.event_id):
            return True
        for attempt in range(1, self.max_attempts + 1):
            started = time.perf_counter()
            try:
                await consumer.handle(event)
            except Exception as exc:  # a handler's failure must not stop the stream
                HANDLER_FAILURES.labels(consumer.name).inc()
                count_store_error(exc)
                log.warning(
                    "consumer %s failed on %s %s (attempt %d/%d): %r",
                    consumer.name, event.type, event.event_id, attempt, self.max_attempts, exc,
                )
                if attempt == self.max_attempts:
                    await self._dead_letter(consumer, event, exc)
                    return False
                await self.sleep(self.retry_base * 2 ** (attempt - 1))
                continue
            await outbox.mark_processed(self.pool, consumer.name, event.event_id)
            EVENTS_HANDLED.labels(consumer.name).inc()
            EVENT_LAG.labels(consumer.name).observe(max(time.time() - event.created_at.timestamp(), 0.0))
            log.debug("consumer %s handled %s in %.1f ms", consumer.name, event.type, (time.perf_counter() - started) * 1000)
            return True
        return False  # pragma: no cover - the loop always returns

    async def _dead_letter(self, consumer: Consumer, event: Event, exc: BaseException) -> None:
        outage = faults.is_unavailable(exc)
        async with self.pool.acquire() as conn, conn.transaction():
            await deadletters.add(conn, consumer.name, event, repr(exc), outage, self.replay_base)
            await outbox.mark_processed(conn, consumer.name, event.event_id)
        DEAD_LETTERS.labels(consumer.name).inc()
        log.error("consumer %s gave up on %s %s: dead-lettered (%s)", consumer.name, event.type, event.event_id,
                  "a store was away: replayed once it is back" if outage else "a bad event: replay it by hand")

    async def dispatch(self, event: Event) -> None:
        """Deliver one event to every consumer of its topic (the inline transport)."""
        await self.dispatch_batch([event])

    async def dispatch_batch(self, events: list[Event]) -> None:
        """Deliver events to every consumer of their topics, each consumer its own in order."""
        for consumer in self.consumers:
            await self.deliver_batch(consumer, [e for e in events if e.topic in consumer.topics])


def event_span(consumer: Consumer, event: Event) -> ContextManager[trace.Span]:
    """The span of one consumer handling one event, continuing the trace of the request that wrote it."""
    return tracer.start_as_current_span(
        f"{consumer.name} {event.type}", context=context_of(event.traceparent), kind=SpanKind.CONSUMER,
        attributes={"messaging.destination.name": event.topic, "messaging.message.id": str(event.event_id),
                    "glint.consumer": consumer.name})


def event_span_in_batch(consumer: Consumer, event: Event) -> ContextManager[object]:
    """For a BatchConsumer, around one event's part of a batch: a span of its own in the trace of
    the request that wrote the event (the batch's span is only linked to those traces), so what
    that part does, and what it publishes, continues the request's trace. Nothing new when the
    current span already continues it (a batch of one) or the event carries no trace."""
    if event.traceparent is None:
        return nullcontext()
    current = trace.get_current_span().get_span_context()
    if current.is_valid and event.traceparent.split("-")[1] == f"{current.trace_id:032x}":
        return nullcontext()
    return event_span(consumer, event)


async def _nothing() -> None:
    return None


@dataclass
class DeadLetterReplayer:
    """Hands due dead letters of this process's consumers to them again: the ones an outage
    caused, on a back-off that doubles per failed replay up to `max_backoff`, and the ones an
    operator scheduled. Several processes may run it: each letter is leased to one."""

    dispatcher: Dispatcher
    poll_seconds: float = 5.0
    max_backoff: float = 300.0
    batch: int = 100

    async def replay_due(self) -> int:
        """Replay what is due now; how many letters were tried."""
        by_name = {c.name: c for c in self.dispatcher.consumers}
        if not by_name:
            return 0
        pool = self.dispatcher.pool
        letters = await deadletters.claim_due(pool, list(by_name), self.batch)
        for letter in letters:
            consumer = by_name[letter.consumer]
            try:
                await consumer.handle(letter.event)
            except Exception as exc:  # still failing: back off (or wait for an operator)
                outage = faults.is_unavailable(exc)
                retry_in = min(self.dispatcher.replay_base * 2 ** (letter.replays + 1), self.max_backoff)
                await deadletters.mark_failed(pool, letter.id, repr(exc), outage, retry_in)
                DEAD_LETTER_REPLAYS.labels(consumer.name, "failed").inc()
                log.warning("replaying dead letter %d (%s %s) failed again: %r", letter.id, consumer.name,
                            letter.event.type, exc)
                continue
            await deadletters.mark_replayed(pool, letter.id)
            EVENTS_HANDLED.labels(consumer.name).inc()
            DEAD_LETTER_REPLAYS.labels(consumer.name, "replayed").inc()
            log.info("replayed dead letter %d: %s %s", letter.id, consumer.name, letter.event.type)
        return len(letters)

    async def run(self, stop: asyncio.Event) -> None:
        """Replay due letters every poll interval until stopped; a store that is away only delays it."""
        outages = faults.OutageLog(log, 30.0)
        while not stop.is_set():
            try:
                while await self.replay_due() and not stop.is_set():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if faults.is_unavailable(exc):
                    outages.note("dead-letter replay", exc)
                else:
                    log.exception("dead-letter replay failed")
            await _wait(stop, self.poll_seconds)


class Sender(Protocol):
    """Where the relay puts a batch of events: Kafka, or the in-process consumers."""

    async def send_batch(self, events: list[Event]) -> None: ...


@dataclass
class InlineSender:
    """Transport "inline": hand events to this process's consumers, in order."""

    dispatcher: Dispatcher

    async def send_batch(self, events: list[Event]) -> None:
        await self.dispatcher.dispatch_batch(events)


@dataclass
class KafkaSender:
    """Transport "kafka": publish a batch with acks=all and wait for every acknowledgement."""

    producer: object  # aiokafka.AIOKafkaProducer, started by its owner
    topic_prefix: str
    made: set[str] = field(default_factory=set)  # topics known to exist with glint's partitions

    async def send_batch(self, events: list[Event]) -> None:
        # a topic the broker makes on first produce gets the broker's default partitions, which a
        # consumer that made it with glint's own may not yet see: make it the one way first
        new = sorted({self.topic_prefix + e.topic for e in events} - self.made)
        bootstrap = getattr(self.producer, "bootstrap", None)
        if new and bootstrap:
            await ensure_topics(bootstrap, new, PARTITIONS)
            self.made.update(new)
        futures = [
            await self.producer.send(
                self.topic_prefix + e.topic, outbox.encode_event(e), key=e.key.encode()
            )
            for e in events
        ]
        await asyncio.gather(*futures)


@dataclass
class Relay:
    """Moves committed outbox rows to a Sender and marks them sent; wakes on NOTIFY, polls as a fallback."""

    pool: asyncpg.Pool
    sender: Sender
    batch: int = 500
    poll_seconds: float = 1.0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self, *_: object) -> None:
        """Called on NOTIFY: there is something to relay."""
        self._wake.set()

    async def relay_once(self) -> int:
        """Relay one batch; return how many events went (0 if none, or another relay holds the lock)."""
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await outbox.claim_unsent_txn(conn, self.batch)
            if not claimed:
                return 0
            events = [event for _, event in claimed]
            await self.sender.send_batch(events)
            await outbox.mark_sent_txn(conn, [row_id for row_id, _ in claimed])
        for event in events:
            EVENTS_PUBLISHED.labels(event.topic).inc()
        return len(events)

    async def drain(self) -> int:
        """Relay until nothing is left; return how many events went."""
        total = 0
        while n := await self.relay_once():
            total += n
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Relay forever: after every wake-up or poll interval; on failure back off and retry."""
        backoff = self.poll_seconds
        while not stop.is_set():
            try:
                async with self.pool.acquire() as listen_conn:
                    await listen_conn.add_listener(outbox.NOTIFY_CHANNEL, self.wake)
                    try:
                        while not stop.is_set() and not listen_conn.is_closed():
                            self._wake.clear()
                            await self.drain()
                            backoff = self.poll_seconds
                            await _wait(self._wake, self.poll_seconds, stop)
                    finally:  # a failed drain too: the connection goes back to the pool without it
                        if not listen_conn.is_closed():
                            await listen_conn.remove_listener(outbox.NOTIFY_CHANNEL, self.wake)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker or the database is away: the rows wait
                log.warning("outbox relay failed, retrying in %.1fs: %r", backoff, exc)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 30.0)


async def _wait(event: asyncio.Event, timeout: float, stop: asyncio.Event | None = None) -> None:
    """Wait for an event (or stop) at most `timeout` seconds."""
    waiters = [asyncio.ensure_future(event.wait())]
    if stop is not None:
        waiters.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def _until_stopped(work: Awaitable[object], stop: asyncio.Event) -> object | None:
    """Await `work` unless `stop` is set first (then cancel it and return None): a consumer that
    is fetching must not hold up a shutdown. A cancellation of the caller still propagates."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.wait([task])  # let it finish cancelling; asyncio.wait never swallows our own cancellation
    if not task.cancelled():
        task.exception()  # retrieved, so a failure while cancelling is not reported as never retrieved
    return None


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 4,
                        attempts: int = 40) -> dict[str, set[int]]:
    """Create the topics that do not exist yet, and return each topic's partitions (a topic just
    made may take a moment to appear in the broker's metadata; a consumer that took none of a
    topic's partitions would never read it)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:  # another process made it first
                pass
        for _ in range(attempts):
            layout = {t: set() for t in topics}
            for described in await admin.describe_topics(topics):
                if described.get("topic") in layout and not described.get("error_code"):
                    layout[described["topic"]] = {p["partition"] for p in described.get("partitions", [])}
            if all(layout.values()):
                return layout
            await asyncio.sleep(0.25)
        raise RuntimeError(f"the broker lists no partitions for {sorted(t for t, ps in layout.items() if not ps)}")
    finally:
        await admin.close()


PARTITIONS = 4  # how many partitions the topics glint makes have (ensure_topics)
LEAVE_TIMEOUT = 3.0  # how long a stopping consumer may spend handing back its partitions


def holder_name() -> str:
    """This process's name among a consumer's holders: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class KafkaConsumerRunner:
    """Reads a consumer's topics from Kafka, on the partitions this process holds a lease on.

    Partitions are shared among the processes that run the consumer by leases in PostgreSQL
    (storage/leases.py), not by Kafka's group protocol: a process that starts takes the
    partitions nobody holds in its first round, so events are consumed from its first second
    rather than after a group join, and a rolling restart hands partitions over within a tick.
    The next offset of each partition is recorded after the events before it are handled.

    `ready` is set once a lease round has run (this process holds its share, or the other
    holders hold the rest), so /readyz can answer 503 until then.
    """

    consumer: Consumer
    dispatcher: Dispatcher
    bootstrap: str
    topic_prefix: str
    group_prefix: str
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    kafka: object | None = None  # the running AIOKafkaConsumer
    handled_to: dict = field(default_factory=dict)  # TopicPartition -> offset after the last event handled
    resumed_from: dict = field(default_factory=dict)  # TopicPartition -> offset this holder began reading at
    tick: float = 0.5
    lease_ttl_ms: int = 3000
    holder: str = field(default_factory=holder_name)

    @property
    def group(self) -> str:
        """The consumer's name in the lease and offset tables (and in metrics)."""
        return self.group_prefix + self.consumer.name

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until stopped; reconnects with back-off when the broker or the database is away."""
        from aiokafka import AIOKafkaConsumer

        loop = asyncio.get_running_loop()
        topics = [self.topic_prefix + t for t in self.consumer.topics]
        backoff = 1.0
        while not stop.is_set():
            kafka = self.kafka = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                     max_poll_records=500, fetch_max_wait_ms=100)
            held: list[int] = []
            try:
                layout = await ensure_topics(self.bootstrap, topics, PARTITIONS)
                await kafka.start()
                slots = max(max(ps) + 1 for ps in layout.values())
                backoff = 1.0
                next_round = 0.0
                while not stop.is_set():
                    if loop.time() >= next_round:
                        now_held = await leases.lease_round(self.dispatcher.pool, self.group, self.holder,
                                                            slots, self.lease_ttl_ms)
                        if now_held != held:
                            await self._assign(kafka, layout, now_held)
                            held = now_held
                        self.ready.set()
                        next_round = loop.time() + self.tick
                    if not held:
                        await _wait(stop, self.tick)
                        continue
                    batches = await _until_stopped(kafka.getmany(timeout_ms=int(self.tick * 1000)), stop)
                    for tp, records in (batches or {}).items():  # returned, so not behind the position any more
                        self.handled_to[tp] = records[0].offset
                    if batches:  # the whole fetch is one batch; each partition's offset moves past it after
                        await self.dispatcher.deliver_batch(self.consumer, [
                            event for records in batches.values() for record in records
                            if (event := self._decode(record)) is not None])
                    for tp, records in (batches or {}).items():
                        self.handled_to[tp] = records[-1].offset + 1
                        await leases.set_offset(self.dispatcher.pool, self.group, tp.topic, tp.partition,
                                                records[-1].offset + 1, self.holder)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.ready.clear()
                log.warning("consumer %s: kafka or database error, reconnecting in %.0fs: %r", self.group, backoff, exc)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                self.ready.clear()
                self.kafka = None
                self.handled_to.clear()
                self.resumed_from.clear()
                try:  # hand the partitions back at once, but never hold up a shutdown for it
                    await asyncio.wait_for(self._leave(kafka), LEAVE_TIMEOUT)
                except Exception as exc:  # the database or the broker is away: the leases run out
                    log.warning("consumer %s: stopped without handing back its partitions: %r", self.group, exc)

    async def _assign(self, kafka: object, layout: dict[str, set[int]], partitions: list[int]) -> None:
        """Read exactly these partitions of every topic, each from its recorded offset."""
        from aiokafka import TopicPartition

        assigned = [TopicPartition(t, p) for t, present in layout.items() for p in partitions if p in present]
        kafka.assign(assigned)
        offsets = await leases.get_offsets(self.dispatcher.pool, self.group, list(layout), partitions)
        fresh = [tp for tp in assigned if (tp.topic, tp.partition) not in offsets]
        # never read before: from the beginning (events are deduplicated by id)
        beginnings = await kafka.beginning_offsets(fresh) if fresh else {}
        self.resumed_from = {}
        for tp in assigned:
            offset = offsets.get((tp.topic, tp.partition), beginnings.get(tp))
            if offset is not None:
                kafka.seek(tp, offset)
                self.resumed_from[tp] = offset

    async def _leave(self, kafka: object) -> None:
        try:
            await leases.release(self.dispatcher.pool, self.group, self.holder)
        finally:
            await kafka.stop()

    async def report_lag(self) -> None:
        """Set the lag of each partition assigned now: the partition's end as last fetched, less
        the offset after the last event handled (or where this holder began reading)."""
        kafka = self.kafka
        if kafka is None:
            return
        for tp in kafka.assignment():
            end = kafka.highwater(tp)
            done = self.handled_to.get(tp, self.resumed_from.get(tp))
            if end is not None and done is not None:
                CONSUMER_LAG.labels(tp.topic, str(tp.partition), self.group).set(max(end - done, 0))

    def _decode(self, record: object) -> Event | None:
        try:
            return outbox.decode_event(record.value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("consumer %s: skipping undecodable record at %s: %r", self.consumer.name, record.offset, exc)
            return None
