"""Dead letters: the events a consumer gave up on, kept in PostgreSQL to be listed and replayed.

A letter caused by an outage (storage/faults.py) is due again at `next_attempt_at`; the replayer
in every consuming process claims due letters with a short lease (so two processes never replay
one at once) and either marks it replayed or backs it off. A bad event waits for an operator.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from storage.outbox import Event

LEASE_SECONDS = 60  # a claimed letter is not claimed again for this long (its replayer died)


class DeadLetter(msgspec.Struct, kw_only=True, frozen=True):
    """One letter as listed."""

    id: int
    consumer: str
    event: Event
    kind: str
    error: str
    replays: int
    next_attempt_at: datetime | None
    created_at: datetime
    replayed_at: datetime | None


_COLUMNS = "id, consumer, event, kind, error, replays, next_attempt_at, created_at, replayed_at"


def _letter(row: asyncpg.Record) -> DeadLetter:
    return DeadLetter(id=row["id"], consumer=row["consumer"], event=msgspec.convert(row["event"], Event),
                      kind=row["kind"], error=row["error"], replays=row["replays"],
                      next_attempt_at=row["next_attempt_at"], created_at=row["created_at"],
                      replayed_at=row["replayed_at"])


def kind_of(outage: bool) -> str:
    return "outage" if outage else "bad_event"


async def add(conn: asyncpg.Connection | asyncpg.Pool, consumer: str, event: Event, error: str, outage: bool,
              retry_in: float) -> int:
    """Keep a letter (or refresh the one this consumer already has for the event); its id."""
    return await conn.fetchval(
        "INSERT INTO dead_letters (consumer, event_id, event, kind, error, next_attempt_at)"
        " VALUES ($1, $2, $3, $4, $5, CASE WHEN $4 = 'outage' THEN now() + make_interval(secs => $6) END)"
        " ON CONFLICT (consumer, event_id) DO UPDATE SET event = EXCLUDED.event, kind = EXCLUDED.kind,"
        " error = EXCLUDED.error, next_attempt_at = EXCLUDED.next_attempt_at, replayed_at = NULL,"
        " updated_at = now()"
        " RETURNING id",
        consumer, event.event_id, msgspec.to_builtins(event), kind_of(outage), error[:2000], retry_in,
    )


async def claim_due(pool: asyncpg.Pool, consumers: list[str], limit: int) -> list[DeadLetter]:
    """Take up to `limit` letters of these consumers that are due, leasing them for a while."""
    rows = await pool.fetch(
        "UPDATE dead_letters SET next_attempt_at = now() + make_interval(secs => $3), updated_at = now()"
        " WHERE id IN (SELECT id FROM dead_letters WHERE replayed_at IS NULL AND next_attempt_at <= now()"
        "              AND consumer = ANY($1::text[]) ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        f" RETURNING {_COLUMNS}",
        consumers, limit, LEASE_SECONDS,
    )
    return sorted((_letter(r) for r in rows), key=lambda letter: letter.id)


async def mark_replayed(pool: asyncpg.Pool, letter_id: int) -> None:
    """The letter's event was handled at last."""
    await pool.execute(
        "UPDATE dead_letters SET replayed_at = now(), next_attempt_at = NULL, replays = replays + 1,"
        " updated_at = now() WHERE id = $1", letter_id)


async def mark_failed(pool: asyncpg.Pool, letter_id: int, error: str, outage: bool, retry_in: float) -> None:
    """A replay failed again: record why, and when (if at all) to try again automatically."""
    await pool.execute(
        "UPDATE dead_letters SET replays = replays + 1, error = $2, kind = $3, updated_at = now(),"
        " next_attempt_at = CASE WHEN $3 = 'outage' THEN now() + make_interval(secs => $4) END"
        " WHERE id = $1", letter_id, error[:2000], kind_of(outage), retry_in)


async def schedule_now(pool: asyncpg.Pool, ids: list[int] | None, consumer: str | None) -> list[int]:
    """Make pending letters due at once (the given ids, or all of a consumer, or all): an
    operator's replay, which a consuming process carries out; the ids scheduled."""
    rows = await pool.fetch(
        "UPDATE dead_letters SET next_attempt_at = now(), updated_at = now()"
        " WHERE replayed_at IS NULL AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))"
        " AND ($2::text IS NULL OR consumer = $2) RETURNING id",
        ids, consumer,
    )
    return sorted(r["id"] for r in rows)


async def get(pool: asyncpg.Pool, ids: list[int]) -> list[DeadLetter]:
    """These letters, by id."""
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = ANY($1::bigint[]) ORDER BY id", ids)
    return [_letter(r) for r in rows]


async def list_letters(pool: asyncpg.Pool, *, include_replayed: bool = False, consumer: str | None = None,
                       limit: int = 100) -> list[DeadLetter]:
    """Letters newest first: pending ones, or every one."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE ($1 OR replayed_at IS NULL)"
        " AND ($2::text IS NULL OR consumer = $2) ORDER BY id DESC LIMIT $3",
        include_replayed, consumer, limit,
    )
    return [_letter(r) for r in rows]


async def pending_counts(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    """Pending letters by kind."""
    rows = await conn.fetch("SELECT kind, count(*) AS n FROM dead_letters WHERE replayed_at IS NULL GROUP BY kind")
    counts = {"outage": 0, "bad_event": 0}
    counts.update({r["kind"]: r["n"] for r in rows})
    return counts

