"""The websocket gateway: the /ws sockets (aiohttp does the handshake, then each socket's
Connection is its transport's protocol: frames are parsed as bytes arrive, with no task per idle
socket), the local registry (user id -> this process's sockets), per-socket bounded send queues
with a writer task while the peer is behind, and the cross-process bus.

Transport only: what a client frame does is decided by the `on_frame` callback that handlers/
provides, and a frame for a user reaches every socket of theirs in every process through Redis
pub/sub, one channel per connected user (`u:{id}`) and one per watched user's presence (`p:{id}`);
on a Redis Cluster these are shard channels (realtime/bus.py). The publishing process pushes the
frame to its own sockets of the user at once (`publish`, `push_here`), without the bus's round
trip; the envelope names the process it came from, which skips the bus's copy when it comes back.
The bus is lossy by design; clients catch up by sequence number with `sync`. Frames that may have
been lost are announced: a socket gets `{"type": "resync", "reason": "bus"}` when its process's
bus connection was made again, or when messages for its user could not be published (the
publisher, realtime/publisher.py, gave up while Redis was away) once publishing works again. A
client that gets `resync` sends `sync` with the last seq it holds per conversation.

Close codes (documented for clients):
  1001 GOING_AWAY  server shutdown: reconnect (elsewhere)
  1002             a frame that breaks the protocol: one not masked (RFC 6455 §5.1), a bad opcode, ...
  1009             a frame larger than the maximum frame size
  4000             idle: nothing arrived from the client for the idle timeout
  4401             the access token expired or its session was revoked: refresh, reconnect
  4403             the account was suspended: do not reconnect
  4408             too slow: the client did not read fast enough and its send queue overflowed;
                   reconnect and `sync`
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import struct
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.http_websocket import WebSocketError
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis

from realtime import frames
from realtime.bus import Bus
from realtime.presence import PresenceStore
from realtime.publisher import Publisher
from realtime.settings import Settings
from storage import faults
from storage.cluster import queue_mget, slot_groups
from storage.tracecontext import context_of, current_traceparent, tracing_on

WS_FRAMES = Counter("glint_ws_frames_total", "Websocket frames received from and written to clients", ["direction"])
WS_FRAMES_IN = WS_FRAMES.labels("in")
WS_FRAMES_OUT = WS_FRAMES.labels("out")
WS_CLOSED_SLOW = Counter("glint_ws_slow_closes_total", "Sockets closed because the client could not keep up")
WS_SWEEP_SECONDS = Gauge("glint_ws_sweep_seconds", "The last heartbeat sweep over this process's sockets"
                         " (pings, timeouts, token and session checks), by clock: wall or cpu", ["clock"])
WS_SWEEP_SOCKETS = Gauge("glint_ws_sweep_sockets", "Sockets the last heartbeat sweep went over")

log = logging.getLogger("glint.realtime")
outages = faults.OutageLog(log)
tracer = trace.get_tracer("glint.realtime")

CLOSE_IDLE = 4000
CLOSE_UNAUTHORIZED = 4401
CLOSE_SUSPENDED = 4403
CLOSE_TOO_SLOW = 4408


def user_channel(user_id: int) -> str:
    """The bus channel of one user's sockets, in every process: frames meant for them go here."""
    return f"u:{user_id}"


def presence_channel(user_id: int) -> str:
    """The bus channel of one user's presence, for the sockets watching it."""
    return f"p:{user_id}"


@dataclass(frozen=True)
class Delivery:
    """What a message.new frame carries for the delivered receipt once it is written out."""

    conversation_id: int
    seq: int
    sender_id: int


FrameHandler = Callable[["Connection", frames.AnyClientFrame], Awaitable[None]]
DeliveryHandler = Callable[["Connection", Delivery], None]


HIGH_WATER = 64 * 1024  # bytes a socket's transport may hold before frames wait in its queue
PING_FRAME = b"\x89\x00"  # a websocket ping with no payload, as a server sends it (unmasked)
_SHORT_HEADERS = [bytes((0x81, n)) for n in range(126)]
_NOTHING: frozenset[int] = frozenset()


def text_frame(data: bytes) -> bytes:
    """A websocket text frame as a server writes it (unmasked, uncompressed, final)."""
    n = len(data)
    if n < 126:
        return _SHORT_HEADERS[n] + data
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + data
    return struct.pack("!BBQ", 0x81, 127, n) + data


class Sink(WebSocketDataQueue):
    """Where the frame parsers of all the process's sockets put what they parsed: the socket being
    read takes it at once (Connection.data_received), so no socket has a queue of its own."""

    def __init__(self) -> None:
        super().__init__(None, 1 << 30, loop=None)
        self.parsed: list[Any] = []
        self.error: BaseException | None = None

    def feed_data(self, data: Any, size: int) -> None:  # type: ignore[override]
        self.parsed.append(data)

    def set_exception(self, exc: BaseException, exc_cause: BaseException | None = None) -> None:  # type: ignore[override]
        self.error = exc

    def feed_eof(self) -> None:
        pass


def close_frame(code: int, reason: bytes) -> bytes:
    """A websocket close frame as a server writes it."""
    payload = struct.pack("!H", code) + reason[:123]
    return bytes((0x88, len(payload))) + payload


class MaskCheck:
    """RFC 6455 §5.1: a server MUST close the connection on a client frame that is not masked.
    aiohttp's reader parses both directions alike and has no option to require the mask (3.14),
    so each socket walks the frame headers here, ahead of the reader: the header's mask bit is
    read, the payload skipped, across reads that split either (a few operations per frame)."""

    __slots__ = ("skip", "head", "failed")

    def __init__(self) -> None:
        self.skip = 0  # bytes of the current frame's payload still to come
        self.head = b""  # the start of a frame header that a read split
        self.failed = False

    def first_unmasked(self, data: bytes) -> int:
        """Where in `data` the first unmasked frame begins (0 if it began in an earlier read, and
        from then on always 0: nothing behind it is a frame), or -1 when every frame is masked."""
        if self.failed:
            return 0
        held = len(self.head)
        if held:
            data, self.head = self.head + data, b""
        at, end = self.skip, len(data)
        while at < end:
            if end - at < 2:
                break
            second = data[at + 1]
            if not second & 0x80:
                self.failed = True
                return max(at - held, 0)
            length = second & 0x7F
            size = 6 if length < 126 else 8 if length == 126 else 14  # with the 4-byte mask
            if end - at < size:
                break
            if length == 126:
                length = int.from_bytes(data[at + 2:at + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[at + 2:at + 10], "big")
            at += size + length
        else:
            self.skip = at - end
            return -1
        self.head, self.skip = data[at:], 0
        return -1


class Connection(asyncio.Protocol):
    """One accepted socket: who it speaks for, and what waits to be written to it. Once the
    handshake is done it is the socket's protocol itself: the transport hands it the bytes, and
    aiohttp's request, its handler and their tasks are gone.

    An idle socket costs little: no task, no timer, no queue; the bytes that arrive are parsed at
    once and each client frame gets a task of its own while it is handled. A frame is written to
    the transport at once while the peer keeps up, and only a peer that falls behind (more than
    HIGH_WATER bytes unsent) gets a queue and a writer task, both gone again once it has caught
    up. The per-socket structures handlers use (`state`, the sync bookkeeping, the in-flight
    tasks) are made on first use."""

    __slots__ = ("gateway", "app", "transport", "reader", "masks", "user_id", "session_id", "expires_at",
                 "revoke_keys", "presence_visible", "id", "limit", "queue", "started", "writer", "space",
                 "sending", "sending_since", "tasks", "backlog", "paused", "drained", "gone", "_state",
                 "watching", "closing", "finished", "refreshed_at", "seen", "pinged_at", "holding", "floors",
                 "recent", "__weakref__")

    def __init__(self, gateway: Gateway, app: web.Application, user_id: int, session_id: int, expires_at: float,
                 revoke_keys: tuple[str, ...], presence_visible: bool) -> None:
        self.gateway = gateway
        self.app = app
        self.transport: asyncio.Transport | None = None  # set by take_over, None once the peer is gone
        self.reader = WebSocketReader(gateway.sink, gateway.settings.max_frame_bytes, compress=False,
                                      decode_text=False)
        self.masks = MaskCheck()
        self.user_id = user_id
        self.session_id = session_id
        self.expires_at = expires_at
        self.revoke_keys = revoke_keys
        self.presence_visible = presence_visible
        self.id = f"{gateway.process_id}:{next(gateway._ids)}"
        self.limit = gateway.settings.send_queue
        self.queue: deque[tuple[bytes, Delivery | None]] | None = None  # frames waiting for the peer
        self.started = False  # hello is out: frames may be written, and client frames are handled
        self.writer: asyncio.Task | None = None  # drains `queue` while the peer is behind
        self.space: asyncio.Future | None = None  # a reply waiting for room in the queue
        self.sending = False  # True only while the writer waits for the peer to read: it is behind
        self.sending_since = 0.0
        self.tasks: set[asyncio.Task] | None = None  # client frames being handled
        self.backlog: deque[Any] | None = None  # parsed client frames waiting to be handled
        self.paused = False  # the transport holds more than its high-water mark
        self.drained: asyncio.Future | None = None  # the writer waiting for the transport to drain
        self.gone: asyncio.Future | None = None  # a server-side close waiting for the peer's close frame
        self._state: dict[str, Any] | None = None
        self.watching: set[int] | frozenset[int] = _NOTHING
        self.closing = False
        self.finished = False  # detached from the registry: nothing more happens
        self.refreshed_at = self.seen = time.monotonic()  # seen: when the client last sent anything
        self.pinged_at = 0.0  # when the sweeper pinged a socket that had been quiet (0: no ping unanswered)
        # while `sync` replays a conversation, live message.new frames of it wait in `holding`;
        # afterwards, any at or below the replayed seq (`floors`) are dropped: never twice
        self.holding: dict[int, list[tuple[bytes, Delivery]]] | None = None
        self.floors: dict[int, int] | None = None
        # the last few live seqs queued per conversation, so a replay skips what just went out live
        self.recent: dict[int, deque[int]] | None = None

    @property
    def state(self) -> dict[str, Any]:
        """A small dict handlers keep per socket (caches, typing timestamps)."""
        if self._state is None:
            self._state = {}
        return self._state

    # ------------------------------------------------------------ the transport's protocol

    def take_over(self, request: web.Request) -> None:
        """Become the protocol of the request's transport (the 101 is on its way). Reading waits
        for hello; what arrived behind the handshake is parsed now and handled after it."""
        handler = request.protocol
        transport = self.transport = request.transport
        if transport is None:
            raise ConnectionResetError("Connection lost")
        tail, handler._message_tail = handler._message_tail, b""
        transport.set_protocol(self)
        transport.pause_reading()
        if tail:
            self.data_received(tail)

    def data_received(self, data: bytes) -> None:
        self.seen = time.monotonic()
        sink = self.gateway.sink
        unmasked = self.masks.first_unmasked(data)
        if unmasked < 0:
            self.reader.feed_data(data)
        else:  # the frames before it are read; it fails the socket as a parser error does (1002)
            if unmasked:
                self.reader.feed_data(data[:unmasked])
            sink.set_exception(WebSocketError(WSCloseCode.PROTOCOL_ERROR, "A client frame must be masked."))
        if sink.parsed or sink.error is not None:
            backlog = self.backlog
            if backlog is None:
                backlog = self.backlog = deque()
            backlog.extend(sink.parsed)
            sink.parsed.clear()
            if sink.error is not None:
                backlog.append(sink.error)  # the parser gave up: handled after the frames before it
                sink.error = None
            self.gateway._take(self)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        self.closing = True
        self._wake(self.gone, None)
        self._wake(self.drained, ConnectionResetError("Connection lost"))
        self.drained = None
        if self.started:  # else serve's hand-over detaches it once attached
            self.gateway._lost(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake(self.drained, None)
        self.drained = None

    @staticmethod
    def _wake(future: asyncio.Future | None, outcome: BaseException | None) -> None:
        if future is not None and not future.done():
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)

    def _read(self, reading: bool) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if reading:
                transport.resume_reading()
            else:
                transport.pause_reading()

    async def close(self, *, code: int = 1000, message: bytes = b"") -> None:
        """Close from the server side (shutdown: GOING_AWAY) and wait until it is closed."""
        closer = self.gateway.cut(self, code, message)
        if closer is not None:
            await asyncio.shield(closer)

    # ------------------------------------------------------------ sending

    def push(self, data: bytes, delivery: Delivery | None = None) -> None:
        """Send a frame pushed by someone else; a full queue means the client cannot keep up,
        and it is cut off (4408) rather than allowed to grow memory."""
        if self.closing:
            return
        if delivery is not None:
            cid = delivery.conversation_id
            if self.holding is not None:
                held = self.holding.get(cid)
                if held is not None:
                    held.append((data, delivery))
                    return
            if self.floors is not None and delivery.seq <= self.floors.get(cid, 0):
                return
            if self.recent is None:
                self.recent = {}
            recent = self.recent.get(cid)
            if recent is None:
                if len(self.recent) >= 256:
                    self.recent.clear()
                recent = self.recent[cid] = deque(maxlen=64)
            recent.append(delivery.seq)
        waiting = len(self.queue) if self.queue is not None else 0
        # a full queue behind a stalled writer, or a burst past four times the bound: too slow
        if waiting >= self.limit and (self.sending or waiting >= 4 * self.limit):
            self.gateway.stats["cut_slow"] += 1
            WS_CLOSED_SLOW.inc()
            self.gateway.cut(self, CLOSE_TOO_SLOW, b"too slow: send queue overflowed")
            return
        self._out(data, delivery)

    def _out(self, data: bytes, delivery: Delivery | None) -> None:
        """Write a frame now, or queue it behind what already waits for the peer."""
        queue = self.queue
        if queue is None:
            transport = self.transport
            if self.started and transport is not None and transport.get_write_buffer_size() < HIGH_WATER:
                if not transport.is_closing():  # else the peer is gone: connection_lost cleans up
                    transport.write(text_frame(data))
                    WS_FRAMES_OUT.inc()
                    if delivery is not None:
                        self.gateway.on_delivered(self, delivery)
                return
            queue = self.queue = deque()
        queue.append((data, delivery))
        if self.started and self.writer is None:
            self.writer = asyncio.create_task(self._write_loop())

    def start(self, hello: bytes) -> None:
        """Write the hello frame, then what the bus brought meanwhile; then read the client."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(text_frame(hello))
            WS_FRAMES_OUT.inc()
        self.started = True
        if self.queue is not None and self.writer is None:
            self.writer = asyncio.create_task(self._write_loop())
        self._read(True)
        self.gateway._take(self)

    def hold(self, conversation_id: int) -> None:
        """Start holding live messages of a conversation (sync is about to replay it)."""
        if self.holding is None:
            self.holding = {}
        self.holding.setdefault(conversation_id, [])

    def sent_live(self, conversation_id: int, seq: int) -> bool:
        """Did this message just go out live (so a replay must skip it)?"""
        recent = self.recent.get(conversation_id) if self.recent is not None else None
        return recent is not None and seq in recent

    def release(self, conversation_id: int, replayed_to: int) -> None:
        """Sync replayed up to `replayed_to`: let the held messages after it through, in order."""
        held = self.holding.pop(conversation_id, []) if self.holding is not None else []
        if self.floors is None or len(self.floors) >= 1000:
            self.floors = {}
        self.floors[conversation_id] = max(self.floors.get(conversation_id, 0), replayed_to)
        for data, delivery in sorted(held, key=lambda item: item[1].seq):
            self.push(data, delivery)

    def answer(self, data: bytes) -> None:
        """Send the gateway's own answer to a client frame (an error, a pong); the client's
        frames wait meanwhile once the queue is full (Gateway._take)."""
        if not self.closing:
            self._out(data, None)

    async def reply(self, data: bytes) -> None:
        """Send a reply to the client's own frame, waiting for room (the client's reads pace its
        own requests)."""
        while self.queue is not None and len(self.queue) >= self.limit and not self.closing:
            if self.space is None:
                self.space = asyncio.get_running_loop().create_future()
            await asyncio.shield(self.space)
        if not self.closing:
            self._out(data, None)

    async def send(self, frame: frames.ServerFrame) -> None:
        """Encode and send a reply frame."""
        await self.reply(frames.encode(frame))

    def _wake_repliers(self) -> None:
        if self.space is not None:
            if not self.space.done():
                self.space.set_result(None)
            self.space = None
        if self.backlog:
            self.gateway._take(self)

    def _frame_done(self, task: asyncio.Task) -> None:
        tasks = self.tasks
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                self.tasks = None
        if self.backlog:
            self.gateway._take(self)

    async def _drain(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        if self.paused:
            if self.drained is None:
                self.drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self.drained)

    async def _write_loop(self) -> None:
        """While the peer is behind: write the queued frames, waiting for the peer to read
        whenever the transport holds more than its high-water mark, then stop."""
        queue, delivered, limit = self.queue, self.gateway.on_delivered, self.limit
        try:
            while queue:
                data, delivery = queue.popleft()
                if len(queue) < limit:
                    self._wake_repliers()
                self.sending, self.sending_since = True, time.monotonic()
                transport = self.transport
                if transport is None or transport.is_closing():
                    raise ConnectionResetError("Cannot write to closing transport")
                transport.write(text_frame(data))
                await self._drain()
                WS_FRAMES_OUT.inc()
                self.sending = False
                if delivery is not None:
                    delivered(self, delivery)
        except (ConnectionError, RuntimeError):
            queue.clear()  # the peer went away; connection_lost cleans up
        finally:
            self.sending = False
            if self.writer is asyncio.current_task():
                self.writer = None
                if not queue:
                    self.queue = None  # caught up: frames go straight out again
            self._wake_repliers()  # repliers see room, or `closing`


class Socket(web.WebSocketResponse):
    """The /ws response. Once aiohttp has written its handshake, the socket's Connection becomes
    the transport's protocol; aiohttp ends every response with write_eof() once the handler (and
    every middleware around it) has returned: there the socket is attached and greeted, and
    aiohttp lets go of the connection, so neither its request nor its tasks stay alive for the
    hours an idle socket lasts."""

    conn: Connection | None = None

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        if self.conn is None:
            super()._post_start(request, protocol, writer)
            return
        self._ws_protocol = protocol
        self.conn.take_over(request)  # type: ignore[arg-type]
        request.protocol.keep_alive(False)

    async def write_eof(self) -> None:  # type: ignore[override]
        conn, self.conn = self.conn, None
        if conn is None:
            await super().write_eof()
            return
        release(self._req)
        await conn.gateway._begin(conn)


def release(request: web.BaseRequest | None) -> None:
    """aiohttp's side of an upgraded connection lets go of it: its handler neither lingers nor
    closes the transport (the Connection owns it now) and leaves the server's list of
    connections, so its request, parser and tasks are freed when the request ends."""
    if request is None:
        return
    handler = request.protocol
    handler._force_close = True
    handler.transport = None
    manager = handler._manager
    if manager is not None:
        manager.connection_lost(handler, None)


class Gateway:
    """The process's sockets and its end of the bus."""

    def __init__(self, redis: Redis, settings: Settings, *, on_frame: FrameHandler,
                 on_delivered: DeliveryHandler | None = None,
                 sockets: weakref.WeakSet | None = None,
                 verify_session: Callable[[int, int], Awaitable[bool]] | None = None) -> None:
        self.redis = redis
        # asked (user_id, session_id) when the cached auth state is missing; without it, refused
        self.verify_session = verify_session
        self.settings = settings
        self.on_frame = on_frame
        self.on_delivered = on_delivered or (lambda conn, delivery: None)
        self.sockets = sockets if sockets is not None else weakref.WeakSet()  # of Connection
        self.sink = Sink()  # every socket's frame parser writes here; the socket read takes it at once
        self.presence = PresenceStore(redis, settings.presence_ttl)
        self.publisher = Publisher(self, give_up_after=settings.publish_give_up)
        self.process_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # an envelope's origin field starts with this when this process published it: its sockets
        # here had the frame when it was published, so the bus's copy is not pushed again
        self._mine = f"{self.process_id}:".encode()
        self._ids = itertools.count(1)
        self.local: dict[int, tuple[Connection, ...]] = {}
        self.watchers: dict[int, set[Connection]] = {}
        self.stats = {"frames_in": 0, "bus_in": 0, "bus_own": 0, "cut_slow": 0}
        self.bus = Bus(redis, on_message=self._on_bus, on_subscribed=self._on_subscribed,
                       on_reconnect=self._on_bus_reconnect)
        self._confirm: dict[bytes, list[asyncio.Future]] = {}
        self._tasks: list[asyncio.Task] = []
        self._closers: set[asyncio.Task] = set()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the bus and start its listener and the heartbeat sweeper."""
        await self.bus.start(f"proc:{self.process_id}")
        self.publisher.start()
        self._tasks = [asyncio.create_task(self._sweep(), name="ws-heartbeat-sweeper")]

    async def stop(self) -> None:
        """Publish what is queued, cut remaining sockets and stop the bus."""
        await self.publisher.stop()
        for conns in list(self.local.values()):
            for conn in conns:
                self.cut(conn, 1001, b"server shutdown")
        for task in self._tasks:
            task.cancel()
        for task in [*self._tasks, *self._closers]:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self.bus.close()

    # ------------------------------------------------------------ the socket loop

    async def serve(self, request: web.Request, *, user_id: int, session_id: int, expires_at: float,
                    revoke_keys: tuple[str, ...], presence_visible: bool) -> web.WebSocketResponse:
        """Accept one authenticated socket (the handshake) and return its response; the socket's
        life starts once the request's middlewares have returned (Socket.write_eof)."""
        # no heartbeat= nor receive timeout: the gateway's one sweeper pings and times out every
        # socket (aiohttp's would keep a timer per socket); no compression
        ws = Socket(compress=False, autoping=False, max_msg_size=self.settings.max_frame_bytes)
        conn = ws.conn = Connection(self, request.app, user_id, session_id, expires_at, revoke_keys,
                                    presence_visible)
        await ws.prepare(request)
        self.sockets.add(conn)
        return ws

    async def _begin(self, conn: Connection) -> None:
        """A socket's start: attached to the registry and the bus, hello, then its frames are read.
        From then on it lives in its transport's callbacks; `_lost` ends it."""
        try:
            await self._attach(conn)
        except Exception as exc:  # nobody above can answer a socket: say it here
            self._failed(exc)
            await self._finish(conn)
            if conn.transport is not None:
                conn.transport.abort()
            return
        if conn.transport is None:  # gone while attaching
            await self._finish(conn)
            return
        # hello goes first, before frames the bus brought while attaching
        conn.start(frames.encode(frames.Hello(user_id=str(conn.user_id), session_id=str(conn.session_id),
                                              heartbeat=self.settings.heartbeat)))

    @staticmethod
    def _failed(exc: BaseException) -> None:
        if faults.is_unavailable(exc):
            outages.note("a websocket", exc)
        else:
            log.error("websocket failed", exc_info=exc)

    def _lost(self, conn: Connection) -> None:
        """The peer is gone (or the server closed the socket): detach it."""
        task = asyncio.create_task(self._finish(conn))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _finish(self, conn: Connection) -> None:
        if conn.finished:
            return
        conn.finished = conn.closing = True
        conn.backlog = None
        for task in [conn.writer, *(conn.tasks or ())]:
            if task is not None:
                task.cancel()
        try:
            await self._detach(conn)
        except Exception as exc:
            self._failed(exc)

    def _take(self, conn: Connection) -> None:
        """Handle the client frames that arrived, in order, while the socket may: a frame waits
        (and reading pauses) while max_inflight frames are being handled, or while the send queue
        is full (the client's reads pace its own requests)."""
        backlog = conn.backlog
        if backlog is None or not conn.started:
            return
        limit = self.settings.max_inflight
        while backlog:
            if conn.closing:
                self._closing_frames(conn, backlog)
                return
            if (conn.tasks is not None and len(conn.tasks) >= limit) or (
                    conn.queue is not None and len(conn.queue) >= conn.limit):
                conn._read(False)
                return
            self._on_frame(conn, backlog.popleft())
        conn.backlog = None
        conn._read(True)

    def _closing_frames(self, conn: Connection, backlog: deque) -> None:
        """A socket being closed from the server side reads only the peer's close frame."""
        for msg in backlog:
            if isinstance(msg, BaseException) or msg.type is WSMsgType.CLOSE:
                Connection._wake(conn.gone, None)
                break
        backlog.clear()
        conn.backlog = None

    def _on_frame(self, conn: Connection, msg: Any) -> None:
        """One frame from the client."""
        if isinstance(msg, BaseException):  # the parser gave up: too large (1009), or not websocket
            self.cut(conn, msg.code if isinstance(msg, WebSocketError) else 1002, b"")
            return
        kind = msg.type
        if kind is WSMsgType.TEXT:
            self.stats["frames_in"] += 1
            WS_FRAMES_IN.inc()
            try:
                frame = frames.decode_client(msg.data)
            except frames.FrameError as exc:
                conn.answer(frames.error(exc.code, exc.message, exc.ref))
                return
            except Exception:  # a fault of the decoder costs this frame, not the socket and what is behind it
                log.exception("a frame could not be decoded")
                conn.answer(frames.error("internal_error", "Something went wrong on our side."))
                return
            if isinstance(frame, frames.Ping):
                conn.answer(frames.encode(frames.Pong(ref=frame.ref)))
                return
            if conn.tasks is None:
                conn.tasks = set()
            task = asyncio.create_task(self._dispatch(conn, frame))
            conn.tasks.add(task)
            task.add_done_callback(conn._frame_done)
        elif kind is WSMsgType.PONG:
            pass  # `seen` moved on: the sweeper's ping was answered
        elif kind is WSMsgType.PING:
            transport = conn.transport
            if transport is not None and not transport.is_closing():
                transport.write(bytes((0x8A, len(msg.data))) + msg.data)
        elif kind is WSMsgType.BINARY:
            conn.answer(frames.error("text_only", "Frames are JSON text, not binary."))
        elif kind is WSMsgType.CLOSE:  # the client closes: answer, and the transport goes
            conn.closing = True
            transport = conn.transport
            if transport is not None and not transport.is_closing():
                transport.write(close_frame(1000, b""))
                transport.close()

    async def _dispatch(self, conn: Connection, frame: frames.AnyClientFrame) -> None:
        try:
            if tracing_on():
                kind = type(frame).__struct_config__.tag
                with tracer.start_as_current_span(f"ws {kind}", kind=SpanKind.SERVER,
                                                  attributes={"glint.frame": kind, "glint.user_id": conn.user_id}):
                    await self.on_frame(conn, frame)
            else:
                await self.on_frame(conn, frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("frame %s failed", type(frame).__name__)
            await conn.reply(frames.error("internal_error", "Something went wrong on our side.", frame.ref))

    def cut(self, conn: Connection, code: int, reason: bytes) -> asyncio.Task | None:
        """Close a socket from the server side without waiting on it: its writer stops at once,
        and a client that does not answer the close frame within 2 s is dropped. Returns the
        closing task (None if it was already closing)."""
        if conn.closing:
            return None
        conn.closing = True
        conn._wake_repliers()
        if conn.writer is not None:
            conn.writer.cancel()
        task = asyncio.create_task(self._close(conn, code, reason))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)
        return task

    async def _close(self, conn: Connection, code: int, reason: bytes) -> None:
        transport = conn.transport
        if transport is None:
            return
        try:
            if not transport.is_closing():
                conn.gone = asyncio.get_running_loop().create_future()
                transport.write(close_frame(code, reason))
                conn._read(True)  # the peer's close frame is the one thing still read
                await asyncio.wait_for(asyncio.shield(conn.gone), 2)
        except asyncio.TimeoutError:
            pass
        finally:
            conn.gone = None
            # a graceful close of a congested transport waits for its buffer to flush: never
            transport.abort()

    # ------------------------------------------------------------ the registry

    async def _attach(self, conn: Connection) -> None:
        # a tuple per user (most have one socket or two): smaller than a set
        conns = self.local[conn.user_id] = (*self.local.get(conn.user_id, ()), conn)
        if len(conns) == 1:
            await self._subscribe(user_channel(conn.user_id))
        came_online = await self.presence.connect(conn.user_id, conn.id)
        if came_online and conn.presence_visible:
            await self.publish_presence(conn.user_id, online=True, last_seen_ms=None)

    async def _detach(self, conn: Connection) -> None:
        conns = self.local.get(conn.user_id)
        if conns is not None and conn in conns:
            rest = tuple(c for c in conns if c is not conn)
            if rest:
                self.local[conn.user_id] = rest
            else:
                del self.local[conn.user_id]
                await self._unsubscribe(user_channel(conn.user_id))
        await self.watch(conn, ())
        try:
            went_offline = await self.presence.disconnect(conn.user_id, conn.id)
            if went_offline is not None and conn.presence_visible:
                await self.publish_presence(conn.user_id, online=False, last_seen_ms=went_offline)
        except Exception:
            log.exception("presence disconnect failed")

    def connections(self, user_id: int) -> Iterable[Connection]:
        """This process's sockets of a user."""
        return self.local.get(user_id, ())

    def connection_count(self) -> int:
        return sum(len(c) for c in self.local.values())

    async def watch(self, conn: Connection, user_ids: Iterable[int]) -> None:
        """Replace the set of users whose presence changes reach this socket."""
        wanted = set(user_ids)
        for uid in conn.watching - wanted:
            watchers = self.watchers.get(uid)
            if watchers is not None:
                watchers.discard(conn)
                if not watchers:
                    del self.watchers[uid]
                    await self._unsubscribe(presence_channel(uid))
        for uid in wanted - conn.watching:
            watchers = self.watchers.setdefault(uid, set())
            watchers.add(conn)
            if len(watchers) == 1:
                await self._subscribe(presence_channel(uid))
        conn.watching = wanted

    # ------------------------------------------------------------ the bus

    async def _subscribe(self, channel: str) -> None:
        future = asyncio.get_running_loop().create_future()
        self._confirm.setdefault(channel.encode(), []).append(future)
        await self.bus.subscribe(channel)
        try:
            await asyncio.wait_for(future, 5)
        except asyncio.TimeoutError:
            log.warning("no confirmation of subscribing %s", channel)

    async def _unsubscribe(self, channel: str) -> None:
        try:
            await self.bus.unsubscribe(channel)
        except Exception:
            log.exception("unsubscribe %s failed", channel)

    def _on_subscribed(self, channel: bytes) -> None:
        for future in self._confirm.pop(channel, ()):
            if not future.done():
                future.set_result(None)

    async def _on_bus_reconnect(self, connection: object) -> None:
        """The bus connection was lost and made again: whatever was published to this process's
        channels meanwhile is gone, so every socket here is told to resync."""
        log.warning("bus reconnected; %d socket(s) told to resync", self.connection_count())
        self.resync_local()

    def resync_local(self) -> None:
        """Push a `resync` frame to every socket of this process."""
        frame = frames.encode(frames.Resync())
        for conns in list(self.local.values()):
            for conn in conns:
                conn.push(frame)

    def _on_bus(self, channel: bytes, data: bytes) -> None:
        self.stats["bus_in"] += 1
        if data.startswith(self._mine, 2):  # `m|` or `f|`, then this process: pushed here already
            self.stats["bus_own"] += 1
            return
        uid = int(channel[2:])
        if channel.startswith(b"p:"):
            frame = data.partition(b"\n")[2]
            for conn in list(self.watchers.get(uid, ())):
                conn.push(frame)
            return
        self._push_envelope(uid, data, True)

    def _push_envelope(self, uid: int, data: bytes, traced: bool) -> None:
        """An envelope for a user's channel, pushed to their sockets here (the bus's copy, or one
        this process is publishing); `traced`: a traceparent in it makes this process's part of
        the trace (a push in the publisher's own process is already in it)."""
        head, _, frame = data.partition(b"\n")
        parts = head.split(b"|")
        kind, exclude = parts[0], parts[1].decode()
        if kind == b"c":  # close the user's sockets in every process: `c|code` (all) or `c|code|sessions`, the reason
            sessions = {int(s) for s in parts[2].split(b",")} if len(parts) > 2 else None
            for conn in list(self.local.get(uid, ())):
                if sessions is None or conn.session_id in sessions:
                    self.cut(conn, int(exclude), frame)
            return
        delivery = Delivery(int(parts[2]), int(parts[3]), int(parts[4])) if kind == b"m" else None
        if traced and len(parts) > (5 if kind == b"m" else 2):  # the publisher was in a trace
            with tracer.start_as_current_span("ws push", context=context_of(parts[-1].decode()),
                                              kind=SpanKind.CONSUMER, attributes={"glint.user_id": uid}):
                self._push_local(uid, exclude, frame, delivery)
        else:
            self._push_local(uid, exclude, frame, delivery)

    def _push_local(self, uid: int, exclude: str, frame: bytes, delivery: Delivery | None) -> int:
        pushed = 0
        for conn in self.local.get(uid, ()):
            if conn.id != exclude:
                conn.push(frame, delivery)
                pushed += 1
        return pushed

    def push_here(self, user_id: int, frame: bytes, *, exclude: Connection | None = None,
                  delivery: Delivery | None = None) -> int:
        """Push a frame to this process's sockets of a user now (but `exclude`); how many got it.
        Its bus copy, an envelope made with `origin=` this process, is then not pushed here again."""
        if user_id not in self.local:
            return 0
        return self._push_local(user_id, exclude.id if exclude is not None else "", frame, delivery)

    @staticmethod
    def envelope(frame: bytes, *, exclude: Connection | None = None, delivery: Delivery | None = None,
                 traceparent: str | None = None, origin: str = "") -> bytes:
        """A frame as it travels the bus: a one-line header (ending with a traceparent: the one
        given, else the publisher's when it is in a trace), then the encoded frame once. The
        header's second field is `process:socket`: the socket not to push to (`exclude`, the
        sender's own), or with `origin` (a process id) only `process:`, saying that this process's
        sockets had the frame when it was published (Gateway.push_here); empty for neither."""
        skip = exclude.id.encode() if exclude is not None else b"%s:" % origin.encode() if origin else b""
        traceparent = traceparent or current_traceparent()
        tail = b"|" + traceparent.encode() if traceparent else b""
        if delivery is None:
            return b"f|%s%s\n%s" % (skip, tail, frame)
        return b"m|%s|%d|%d|%d%s\n%s" % (skip, delivery.conversation_id, delivery.seq,
                                         delivery.sender_id, tail, frame)

    async def publish(self, items: list[tuple[int, bytes]]) -> list[int]:
        """Push envelopes to their users' sockets here at once, and publish them to the users'
        channels for the other processes in one round trip; per item, how many processes hold a
        socket of that user (this one included; 0: the user has no connected socket anywhere)."""
        mine = self._mine
        marked: list[tuple[int, bytes]] = []
        for user_id, envelope in items:
            if user_id in self.local:
                self._push_envelope(user_id, envelope, False)
            if envelope[2:3] in (b"|", b"\n"):  # no origin yet (else it names a socket here): this one
                envelope = envelope[:2] + mine + envelope[2:]
            marked.append((user_id, envelope))
        return await self.publish_elsewhere(marked)

    async def publish_elsewhere(self, items: list[tuple[int, bytes]]) -> list[int]:
        """Publish envelopes already pushed here (made with `origin=` this process, or excluding a
        socket here) to users' channels in one round trip, as `publish` does."""
        return await self.bus.publish_many([(user_channel(user_id), envelope) for user_id, envelope in items])

    async def close_user(self, user_id: int, code: int, reason: bytes) -> None:
        """Close every socket of a user in every process (e.g. 4403 on suspension)."""
        await self.bus.publish(user_channel(user_id), b"c|%d\n%s" % (code, reason))

    async def close_sessions(self, user_id: int, session_ids: list[int], code: int, reason: bytes) -> None:
        """Close the sockets of some of a user's sessions in every process (4401 when they are logged out)."""
        if session_ids:
            sessions = b",".join(b"%d" % s for s in session_ids)
            await self.bus.publish(user_channel(user_id), b"c|%d|%s\n%s" % (code, sessions, reason))

    async def publish_presence(self, user_id: int, *, online: bool, last_seen_ms: int | None) -> None:
        """Tell the watchers of a user, in every process, that they came online or went offline."""
        frame = frames.encode(frames.Presence(user_id=str(user_id), status="online" if online else "offline",
                                              last_seen=frames.iso_ms(last_seen_ms)))
        await self.bus.publish(presence_channel(user_id), b"f|\n" + frame)

    # ------------------------------------------------------------ heartbeats

    async def _sweep(self) -> None:
        """The one timer of every socket here. Each tick: close sockets the client has sent nothing
        on for the idle timeout (4000). Each heartbeat: drop sockets that did not answer the last
        ping (a dead peer), ping the ones that have been quiet, and check tokens and sessions
        (check_connections). What the last sweep cost is in /metrics (glint_ws_sweep_seconds)."""
        s = self.settings
        tick = min(s.heartbeat, s.idle_timeout / 2)
        next_beat = time.monotonic() + s.heartbeat
        while True:
            await asyncio.sleep(tick)
            try:
                self.cut_idle()
                if time.monotonic() >= next_beat - tick / 10:
                    next_beat = time.monotonic() + s.heartbeat
                    started, cpu = time.perf_counter(), time.process_time()
                    self.ping_quiet()
                    await self.check_connections()
                    WS_SWEEP_SECONDS.labels("cpu").set(time.process_time() - cpu)
                    WS_SWEEP_SECONDS.labels("wall").set(time.perf_counter() - started)
                    WS_SWEEP_SOCKETS.set(self.connection_count())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heartbeat sweep failed")

    def cut_idle(self) -> None:
        """Close the sockets nothing arrived on (not even a pong) for the idle timeout (4000)."""
        oldest = time.monotonic() - self.settings.idle_timeout
        for conns in list(self.local.values()):
            for conn in conns:
                if conn.seen < oldest and not conn.closing:
                    self.cut(conn, CLOSE_IDLE, b"idle")

    def ping_quiet(self) -> None:
        """Ping each socket the client has been quiet on for a heartbeat; one that has not
        answered the previous ping (nothing arrived since) is a dead peer: its connection is
        dropped, as aiohttp's own heartbeat does."""
        now = time.monotonic()
        quiet = now - self.settings.heartbeat / 2
        for conns in list(self.local.values()):
            for conn in conns:
                transport = conn.transport
                if conn.closing or transport is None or transport.is_closing():
                    continue
                if conn.pinged_at and conn.seen < conn.pinged_at:
                    transport.abort()  # no close frame: the peer is not there to read it
                elif conn.seen < quiet:
                    transport.write(PING_FRAME)  # whole frames only: never inside another one
                    conn.pinged_at = now
                else:
                    conn.pinged_at = 0.0

    async def check_connections(self) -> None:
        """One sweep (the sweeper's body; tests call it to avoid waiting). The session and user
        markers of a chunk of sockets are read by one MGET per slot (one on a node), each key
        once however many sockets share it, rather than a command per socket."""
        now, mono = time.time(), time.monotonic()
        conns = [c for group in self.local.values() for c in group if not c.closing]
        for start in range(0, len(conns), 1000):
            checked: list[Connection] = []
            for conn in conns[start:start + 1000]:
                if conn.expires_at <= now:
                    self.cut(conn, CLOSE_UNAUTHORIZED, b"token expired")
                elif conn.sending and mono - conn.sending_since > self.settings.heartbeat:
                    self.stats["cut_slow"] += 1  # one frame unwritten for a whole heartbeat
                    WS_CLOSED_SLOW.inc()
                    self.cut(conn, CLOSE_TOO_SLOW, b"too slow: a write stalled")
                else:
                    checked.append(conn)
            if not checked:
                continue
            groups = slot_groups(self.redis, list(dict.fromkeys(k for c in checked for k in c.revoke_keys)))
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys in groups:
                    queue_mget(pipe, keys)
                for conn in checked:
                    if mono - conn.refreshed_at >= self.settings.presence_refresh:
                        conn.refreshed_at = mono
                        self.presence.refresh(pipe, conn.user_id, conn.id)
                replies = await pipe.execute()
            marks = {key: state for keys, states in zip(groups, replies) for key, state in zip(keys, states)}
            unknown: list[Connection] = []
            for conn in checked:
                states = [marks[key] for key in conn.revoke_keys]
                if any(state is not None and state != b"1" for state in states):
                    self.cut(conn, CLOSE_UNAUTHORIZED, b"session revoked")
                elif None in states:
                    unknown.append(conn)
            for conn in unknown:  # the cache lost its answer: the truth decides, never "allowed"
                if self.verify_session is None or not await self.verify_session(conn.user_id, conn.session_id):
                    self.cut(conn, CLOSE_UNAUTHORIZED, b"session revoked")

gateway_key = web.AppKey("gateway", Gateway)


def gateway_ctx(build: Callable[[web.Application], Gateway]):
    """A cleanup context that builds the process's gateway, starts its bus and stops it."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        gateway = build(app)
        app[gateway_key] = gateway
        await gateway.start()
        yield
        await gateway.stop()

    return ctx
