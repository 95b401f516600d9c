"""Publishing frames to the bus off the caller's path.

The message writer pushes each committed batch's frames to this process's sockets itself, hands
their envelopes here for the other processes, and goes on with the next batch: it never waits on
Redis. One task publishes them in order, a pipeline per round. When Redis fails it
retries the same frames with back-off; when the failure lasts past `give_up_after` (or is not an
outage) the frames are dropped and their users remembered, and once a publish succeeds again each
of them gets a `resync` frame: the client runs `sync` and fetches what it missed from PostgreSQL.
Every publication's `done` callback learns per item how many processes took it, or None when it
was dropped, so that callers never take "unknown" for "online".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

from realtime import frames
from storage import faults

if TYPE_CHECKING:
    from realtime.gateway import Gateway

log = logging.getLogger("glint.realtime")

Done = Callable[[list[int] | None], Awaitable[None]]
ROUND_ITEMS = 2000  # at most this many envelopes per pipeline


@dataclass
class Publication:
    items: list[tuple[int, bytes]]
    done: Done | None


class Publisher:
    """The process's ordered, retrying publisher (one per gateway)."""

    def __init__(self, gateway: Gateway, *, give_up_after: float = 5.0, retry_base: float = 0.05,
                 retry_max: float = 1.0, max_queued: int = 100_000) -> None:
        self.gateway = gateway
        self.give_up_after = give_up_after
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.max_queued = max_queued
        self.queue: deque[Publication] = deque()
        self.queued = 0  # envelopes waiting
        self.stale: set[int] = set()  # users owed a resync hint
        self.stats = {"published": 0, "dropped": 0, "resyncs": 0}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._callbacks: set[asyncio.Task] = set()
        self._failing_since: float | None = None
        self._outages = faults.OutageLog(log)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bus-publisher")

    async def stop(self, timeout: float = 2.0) -> None:
        """Publish what is queued (within the timeout), then stop."""
        if self._task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.queue and loop.time() < deadline and not self._task.done():
            await asyncio.sleep(0.01)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        if self._callbacks:
            await asyncio.wait(list(self._callbacks), timeout=timeout)

    def submit(self, items: list[tuple[int, bytes]], done: Done | None = None) -> None:
        """Queue envelopes for users' channels, already pushed to the sockets here (Gateway.push_here,
        an envelope with this process as its origin); returns at once."""
        if items:
            self.queue.append(Publication(items, done))
            self.queued += len(items)
            self._wakeup.set()

    async def _run(self) -> None:
        backoff = self.retry_base
        while True:
            if not self.queue:
                self._wakeup.clear()
                try:  # with users owed a hint, probe the bus every back-off even when idle
                    await asyncio.wait_for(self._wakeup.wait(), backoff if self.stale else None)
                except asyncio.TimeoutError:
                    pass
            round_ = self._take_round()
            try:
                counts = await self.gateway.publish_elsewhere([item for p in round_ for item in p.items])
            except asyncio.CancelledError:
                self.queue.extendleft(reversed(round_))
                raise
            except Exception as exc:
                self._on_failure(round_, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max)
                continue
            self.stats["published"] += len(counts)
            position = 0
            for publication in round_:
                n = len(publication.items)
                self._callback(publication, counts[position:position + n])
                position += n
            if self.stale:
                try:
                    await self._send_resync()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._note(exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.retry_max)
                    continue
            self._failing_since, backoff = None, self.retry_base

    def _take_round(self) -> list[Publication]:
        round_: list[Publication] = []
        size = 0
        while self.queue and (not round_ or size + len(self.queue[0].items) <= ROUND_ITEMS):
            publication = self.queue.popleft()
            self.queued -= len(publication.items)
            size += len(publication.items)
            round_.append(publication)
        return round_

    def _on_failure(self, round_: list[Publication], exc: Exception) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        outage = self._note(exc)
        if outage and now - self._failing_since < self.give_up_after and self.queued < self.max_queued:
            self.queue.extendleft(reversed(round_))  # retried first, so the order holds
            self.queued += sum(len(p.items) for p in round_)
            return
        # given up: these frames and everything queued behind them go; their users will resync
        dropped = round_ + list(self.queue)
        self.queue.clear()
        self.queued = 0
        for publication in dropped:
            self.stale.update(user for user, _ in publication.items)
            self.stats["dropped"] += len(publication.items)
            self._callback(publication, None)

    def _note(self, exc: Exception) -> bool:
        """Log a failed publish (an outage as one line now and then); was it an outage?"""
        if faults.is_unavailable(exc):
            self._outages.note("publishing to the bus", exc)
            return True
        log.error("publishing to the bus failed", exc_info=exc)
        return False

    async def _send_resync(self) -> None:
        users, self.stale = self.stale, set()
        # the sockets here had the frames: only the other processes' are owed a resync
        envelope = self.gateway.envelope(frames.encode(frames.Resync()), origin=self.gateway.process_id)
        try:
            await self.gateway.publish_elsewhere([(user, envelope) for user in sorted(users)])
        except BaseException:
            self.stale |= users
            raise
        self.stats["resyncs"] += len(users)

    def _callback(self, publication: Publication, counts: list[int] | None) -> None:
        if publication.done is None:
            return
        task = asyncio.create_task(self._guarded(publication.done, counts))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    @staticmethod
    async def _guarded(done: Done, counts: list[int] | None) -> None:
        try:
            await done(counts)
        except Exception:
            log.exception("a publication's callback failed")
