"""The delivery writers, one of each per process (group commit).

`MessageWriter`: every send queued while the previous commit of its lane ran (a lane per
conversation id modulo the lane count, GLINT_MESSAGE_WRITER_LANES, on a pool of as many
connections of its own whose statements are planned once, not per execution) is stored by one
statement, then acknowledged, pushed to the members' sockets on this process at once, and
published to each member's bus channel for the other processes in one round trip; recipients
with no socket anywhere get a `message_sent` event (for a push). `ReceiptWriter`: delivered
receipts, coalesced per (conversation, recipient) over RECEIPT_LINGER, one statement per flush. Publishing
is lossy by design: clients catch up with `sync`. Neither writer shares fate across senders: a
value the database refuses fails its own send (or receipt), never the batch's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import asyncpg
from aiohttp import web
from prometheus_client import Counter

import events
from realtime import frames
from realtime.gateway import Connection, Delivery, Gateway
from realtime.frames import message_out, render_shares
from storage import faults, outbox
from storage import messages as store

log = logging.getLogger("glint.messages")
outages = faults.OutageLog(log)

BATCH_MAX = 500
RECEIPT_LINGER = 0.02  # seconds delivered receipts gather after the first, before they are stored

MESSAGES_SENT = Counter("glint_messages_sent_total", "Direct messages written")


class _Lane:
    """One of the message writer's queues, with the task that stores it."""

    __slots__ = ("queue", "wakeup", "task")

    def __init__(self) -> None:
        self.queue: list[tuple[store.Draft, asyncio.Future, Connection | None]] = []
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None


class Unstorable(Exception):
    """A value of this message the database refused (the edge should have caught it)."""


def refused(exc: BaseException) -> BaseException:
    """What the sender of a message the database refused hears: Unstorable for a value it refused
    (logged, as the edge should have caught it), the error itself otherwise."""
    if isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, UnicodeError,
                        OverflowError, ValueError)):
        log.warning("a message was refused by the database: %r", exc)
        return Unstorable()
    return exc


class MessageWriter:
    """One per process: stores queued drafts a batch per statement, acks, publishes after commit,
    and records `message_sent` events for recipients with no socket anywhere.

    The drafts go into `lanes` queues by conversation id, each stored by a task of its own, so a
    batch need not wait for another conversation's commit: the lanes' statements run at once on
    their own connections. A conversation's drafts always take the same lane, one batch after
    another, so they keep their order; seqs stay gapless as across processes (each statement
    numbers its conversations under their row locks, and lanes never share a conversation)."""

    def __init__(self, pool: asyncpg.Pool, gateway: Gateway, lanes: int = 1,
                 store_pool: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        # where the batches are stored: a pool of generic plans (db.create_pool), as planning the
        # batch statement anew cost more than running it; `pool` for everything else
        self.store_pool = store_pool if store_pool is not None else pool
        self.gateway = gateway
        self.lanes = [_Lane() for _ in range(lanes)]
        self.stats = {"batches": 0, "messages": 0}

    def start(self) -> None:
        for n, lane in enumerate(self.lanes):
            lane.task = asyncio.create_task(self._run(lane), name=f"message-writer-{n}")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        for lane in self.lanes:
            if lane.task is not None:
                lane.queue.append(None)  # type: ignore[arg-type]  # the stop marker
                lane.wakeup.set()
        for lane in self.lanes:
            if lane.task is not None:
                await lane.task

    def submit(self, draft: store.Draft, origin: Connection | None) -> asyncio.Future:
        """Queue a draft (synchronously, so a socket's sends keep their order); the future gives
        its store.Written."""
        future = asyncio.get_running_loop().create_future()
        lane = self.lanes[draft.conversation_id % len(self.lanes)]
        lane.queue.append((draft, future, origin))
        lane.wakeup.set()
        return future

    async def _run(self, lane: _Lane) -> None:
        while True:
            await lane.wakeup.wait()
            lane.wakeup.clear()
            while lane.queue:
                batch, lane.queue = lane.queue[:BATCH_MAX], lane.queue[BATCH_MAX:]
                stop = any(item is None for item in batch)
                batch = [item for item in batch if item is not None]
                if batch:
                    try:
                        await self._write(batch)
                    except Exception as exc:
                        if isinstance(exc, asyncpg.InternalClientError):
                            # a connection of the store pool was poisoned by the outage: replace them all
                            await self.store_pool.expire_connections()
                        if faults.is_unavailable(exc):
                            outages.note("storing messages", exc)
                        else:
                            log.exception("message batch failed")
                        for _, future, _ in batch:
                            if not future.done():
                                future.set_exception(exc)
                if stop:
                    return

    async def _write(self, batch: list[tuple[store.Draft, asyncio.Future, Connection | None]]) -> None:
        # the same (sender, client id) twice in one batch: the later ones share the first's result
        first: dict[tuple[int, str], int] = {}
        unique: list[tuple[store.Draft, asyncio.Future, Connection | None]] = []
        followers: list[tuple[int, asyncio.Future]] = []
        for draft, future, origin in batch:
            key = (draft.sender_id, draft.client_id)
            if key in first:
                followers.append((first[key], future))
            else:
                first[key] = len(unique)
                unique.append((draft, future, origin))
        drafts = [d for d, _, _ in unique]
        results: list[store.Written | BaseException]
        try:
            results = list(await self._store(drafts))
        except Exception as exc:
            if faults.is_unavailable(exc):
                raise  # the store is away: every sender hears it
            if len(drafts) == 1:
                results = [refused(exc)]
            else:
                # no shared fate: one value the database refuses fails its own send, not the batch
                log.warning("a batch of %d messages failed (%r); storing them one by one", len(drafts), exc)
                results = [await self._store_one(d) for d in drafts]
        self.stats["batches"] += 1
        self.stats["messages"] += len(drafts)
        MESSAGES_SENT.inc(sum(1 for w in results if not isinstance(w, BaseException) and w.status == "ok"))
        for (draft, future, _), written in zip(unique, results):
            if not future.done():
                if isinstance(written, BaseException):
                    future.set_exception(written)
                else:
                    future.set_result(written)
        for index, future in followers:
            if not future.done():
                original = results[index]
                if isinstance(original, BaseException):
                    future.set_exception(original)
                else:
                    future.set_result(store.Written("duplicate", original.message, []))
        await self._publish([(w, origin) for (_, _, origin), w in zip(unique, results)
                             if not isinstance(w, BaseException) and w.status == "ok"])

    async def _store(self, drafts: list[store.Draft]) -> list[store.Written]:
        for attempt in range(5):
            try:
                return await store.write_batch(self.store_pool, drafts)
            except (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError):
                # another process stored one of these client ids meanwhile (a retry finds the
                # original), or lock orders crossed; the statement changed nothing
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def _store_one(self, draft: store.Draft) -> store.Written | BaseException:
        try:
            return (await self._store([draft]))[0]
        except Exception as exc:
            return exc if faults.is_unavailable(exc) else refused(exc)

    async def _publish(self, written: list[tuple[store.Written, Connection | None]]) -> None:
        """Push the frames to the members' sockets here, in commit order, and hand them to the bus
        publisher for the other processes (the writer never waits on the bus). Once they are out,
        recipients no process holds a socket of get `message_sent`, for a push; when the bus could
        not take them, every recipient not reached here counts as offline: a push too many, never
        one missing."""
        gateway = self.gateway
        here = gateway.process_id
        items: list[tuple[int, bytes]] = []
        owners: list[int | None] = []
        # a reply to a message a member may not read is no reply for them: one query for the batch
        # (none when nothing in it replies), and a frame of their own
        unseen = await store.replies_hidden(self.pool, [(m, w.message) for w, _ in written
                                                        if w.message["reply_to_seq"] is not None for m in w.member_ids])
        for w, origin in written:
            row = w.message
            frame = frames.encode(frames.MessageNew(message=message_out(row)))
            # a share is rendered for each member by the visibility policy: one frame each
            shares = await render_shares(self.pool, w.member_ids, [row]) if row["share_type"] is not None else {}
            sender = row["sender_id"]
            delivery = Delivery(row["conversation_id"], row["seq"], sender)
            for member in w.member_ids:
                key = (member, row["id"])
                own = frame if key not in shares and key not in unseen else frames.encode(frames.MessageNew(
                    message=message_out(row, share=shares.get(key), reply_hidden=key in unseen)))
                exclude = origin if member == sender else None
                reached = gateway.push_here(member, own, exclude=exclude, delivery=delivery)
                items.append((member, Gateway.envelope(own, exclude=exclude, delivery=delivery, origin=here)))
                owners.append(None if member == sender or member in w.quiet_ids or reached else id(w))

        async def published(counts: list[int] | None) -> None:
            offline: dict[int, list[int]] = defaultdict(list)
            for (member, _), owner, count in zip(items, owners, counts or [0] * len(items)):
                if owner is not None and count == 0:
                    offline[owner].append(member)
            if offline:
                await self._record_offline([(w.message, offline[id(w)]) for w, _ in written if id(w) in offline])

        gateway.publisher.submit(items, published)

    async def _record_offline(self, rows: list[tuple[asyncpg.Record, list[int]]]) -> None:
        """`message_sent` for recipients no process holds a socket of, for the notifications work.
        Written right after the message's commit (who is offline is known only after publishing):
        a crash in between loses that push, never the message."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                for row, recipients in rows:
                    await outbox.add(conn, events.MessageSent(
                        message_id=str(row["id"]), conversation_id=str(row["conversation_id"]), seq=row["seq"],
                        sender_id=str(row["sender_id"]), recipient_ids=[str(r) for r in recipients],
                        preview=row["text"][:100]), row["conversation_id"])
        except Exception as exc:
            if faults.is_unavailable(exc):
                outages.note("recording message_sent events", exc)
            else:
                log.exception("recording message_sent events failed")


class ReceiptWriter:
    """Delivered receipts, coalesced: each (conversation, recipient) moves to the highest seq its
    sockets wrote since the last flush, in one statement, and the senders are told."""

    def __init__(self, pool: asyncpg.Pool, gateway: Gateway) -> None:
        self.pool = pool
        self.gateway = gateway
        self.pending: dict[tuple[int, int], tuple[int, set[int]]] = {}
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.stopping = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="receipt-writer")

    async def stop(self) -> None:
        if self.task is not None:
            self.stopping = True
            self.wakeup.set()
            await self.task

    async def _mark(self, positions: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        for attempt in range(3):
            try:
                return await store.mark_delivered_batch(self.pool, positions)
            except asyncpg.DeadlockDetectedError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def add(self, user_id: int, delivery: Delivery) -> None:
        """A socket of user_id wrote message delivery.seq out."""
        if user_id == delivery.sender_id:
            return
        key = (delivery.conversation_id, user_id)
        seq, senders = self.pending.get(key, (0, set()))
        senders.add(delivery.sender_id)
        self.pending[key] = (max(seq, delivery.seq), senders)
        self.wakeup.set()

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            if not self.stopping:
                # the receipts of a fan-out (and of the messages right behind it) gather for a
                # moment: one statement for all of them, run after the fan-out rather than in it
                await asyncio.sleep(RECEIPT_LINGER)
            self.wakeup.clear()
            if self.pending:
                pending, self.pending = self.pending, {}
                try:
                    await self._flush(pending)
                except Exception:
                    log.exception("delivered receipts failed")
            if self.stopping:
                return

    async def _flush(self, pending: dict[tuple[int, int], tuple[int, set[int]]]) -> None:
        positions = sorted((conv, user, seq) for (conv, user), (seq, _) in pending.items())
        try:
            moved = await self._mark(positions)
        except Exception as exc:
            if faults.is_unavailable(exc):
                raise
            # no shared fate: a position the database refuses loses only its own receipt
            log.warning("a batch of %d delivered receipts failed (%r); writing them one by one", len(positions), exc)
            moved = []
            for position in positions:
                try:
                    moved += await self._mark([position])
                except Exception as one:
                    if faults.is_unavailable(one):
                        raise
                    log.warning("delivered receipt %s refused: %r", position, one)
        items = []
        for conv, user, seq in moved:
            frame = frames.encode(frames.MessageDelivered(conversation_id=str(conv), seq=seq, user_id=str(user)))
            for sender in pending[(conv, user)][1]:
                items.append((sender, Gateway.envelope(frame)))
        await self.gateway.publish(items)


writer_key = web.AppKey("message_writer", MessageWriter)
receipts_key = web.AppKey("receipt_writer", ReceiptWriter)


def on_delivered(conn: Connection, delivery: Delivery) -> None:
    """The gateway's callback once a socket wrote a message.new out."""
    conn.app[receipts_key].add(conn.user_id, delivery)
