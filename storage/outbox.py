"""The event outbox: events are rows written in the caller's transaction, relayed after commit.

An event exists once the transaction that made it true commits, and never if it rolls back. The
relay (jobs/events.py `Relay`) moves unsent rows to Kafka, or straight to the in-process consumers, and
marks them sent. What an event says is one of the Structs of the catalogue (events/):
`add` encodes it into the row's payload, `body_of` decodes it back for a consumer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, TypeVar, overload

import asyncpg
import msgspec

from events import CATALOGUE, EventBody, type_of
from storage.tracecontext import current_traceparent

NOTIFY_CHANNEL = "glint_outbox"
RELAY_LOCK = 0x6F_75_74_62_6F_78  # "outbox": one relay at a time keeps each key's events in order


class Event(msgspec.Struct, kw_only=True, frozen=True):
    """A domain event as it travels: on Kafka it is this Struct as JSON, keyed by `key`."""

    event_id: uuid.UUID
    topic: str
    type: str
    key: str
    payload: dict[str, Any]
    created_at: datetime
    # the W3C trace context of the transaction that made the event, for the consumers' spans
    traceparent: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """The wire form of an event."""
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Parse the wire form; raises msgspec errors on garbage."""
    return _decoder.decode(data)


B = TypeVar("B", bound=EventBody)


@overload
def body_of(event: Event) -> EventBody: ...
@overload
def body_of(event: Event, kind: type[B]) -> B: ...
def body_of(event: Event, kind: type[EventBody] | None = None) -> EventBody:
    """What the event says, as its type's Struct (which must be `kind` when given); raises
    msgspec.ValidationError when the payload does not fit it (a bad event), KeyError for a type
    the catalogue lacks."""
    cls = CATALOGUE[event.type]
    if kind is not None and cls is not kind:
        raise TypeError(f"a {event.type} event is not a {type_of(kind)}")
    return msgspec.convert(event.payload, cls)


async def add(conn: asyncpg.Connection, body: EventBody, key: object) -> uuid.UUID:
    """Record a catalogued event inside the caller's transaction, on its topic, keyed by `key`
    (the aggregate whose events must stay in order)."""
    payload = msgspec.to_builtins(body)
    del payload["type"]  # the row's type column carries the tag
    return await add_event(conn, body.topic, type_of(body), key, payload)


async def add_event(conn: asyncpg.Connection, topic: str, type: str, key: object, payload: dict[str, Any]) -> uuid.UUID:
    """Record an event inside the caller's transaction; it is relayed only if that commits.
    The app's events go through `add`; this is the runtime's own form, for any payload."""
    event_id = await conn.fetchval(
        "INSERT INTO outbox (topic, type, key, payload, traceparent) VALUES ($1, $2, $3, $4, $5) RETURNING event_id",
        topic, type, str(key), payload, current_traceparent(),
    )
    # NOTIFY is transactional too: the relay wakes on commit, never for a rollback
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return event_id


def _row_event(row: asyncpg.Record) -> Event:
    return Event(
        event_id=row["event_id"], topic=row["topic"], type=row["type"], key=row["key"],
        payload=row["payload"], created_at=row["created_at"], traceparent=row["traceparent"],
    )


async def claim_unsent_txn(conn: asyncpg.Connection, limit: int) -> list[tuple[int, Event]] | None:
    """Inside a transaction: take the relay lock and the oldest unsent events; None if another relay holds it."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RELAY_LOCK):
        return None
    rows = await conn.fetch(
        "SELECT id, event_id, topic, type, key, payload, created_at, traceparent FROM outbox"
        " WHERE sent_at IS NULL ORDER BY id LIMIT $1",
        limit,
    )
    return [(row["id"], _row_event(row)) for row in rows]


async def mark_sent_txn(conn: asyncpg.Connection, ids: list[int]) -> None:
    """Inside the claiming transaction: mark relayed events sent."""
    await conn.execute("UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", ids)


async def backlog(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """How many committed events wait to be relayed."""
    return await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")


async def prune_sent(conn: asyncpg.Pool, older_than_days: int) -> int:
    """Delete relayed events older than the given age; return how many."""
    status = await conn.execute(
        "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(days => $1)",
        older_than_days,
    )
    return int(status.split()[-1])


async def was_processed(conn: asyncpg.Pool | asyncpg.Connection, consumer: str, event_id: uuid.UUID) -> bool:
    """Has this consumer already handled this event?"""
    return bool(await conn.fetchval(
        "SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2", consumer, event_id
    ))


async def mark_processed(conn: asyncpg.Pool | asyncpg.Connection, consumer: str, event_id: uuid.UUID) -> bool:
    """Record that this consumer handled this event; False if it already had."""
    status = await conn.execute(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        consumer, event_id,
    )
    return status.endswith("1")


async def unprocessed_txn(conn: asyncpg.Connection, consumer: str, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these events this consumer has not handled yet, in one query."""
    rows = await conn.fetch(
        "SELECT e FROM unnest($2::uuid[]) e"
        " WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.consumer = $1 AND p.event_id = e)",
        consumer, event_ids,
    )
    return {r["e"] for r in rows}


async def mark_processed_many_txn(conn: asyncpg.Connection, consumer: str, event_ids: list[uuid.UUID]) -> None:
    """Record in one statement that this consumer handled these events."""
    await conn.execute(
        "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
        consumer, event_ids,
    )
