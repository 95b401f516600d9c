"""The cross-process bus under the gateway: Redis pub/sub, on one node or on a Redis Cluster.

On one node it is plain pub/sub on one connection. On a cluster a plain PUBLISH is broadcast to
every node over the cluster bus, so the per-user channels are shard channels instead
(SSUBSCRIBE/SPUBLISH): a channel lives on the primary that owns its slot, a publish touches that
primary only, and this process holds one subscriber connection per primary it needs. redis-py's
ClusterPubSub reads its shard connections by polling them in turn; here each primary's
connection has its own reader task, so a frame is read the moment it arrives.

A slot that moves to another primary (resharding, a failover) unsubscribes its channels on the
old owner; they are subscribed again on the new one and the sockets here are told to resync, as
after any reconnect of the bus.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, AsyncIterator, Awaitable, Callable

from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio import ConnectionPool
from redis.asyncio.client import PubSub
from redis.crc import key_slot

from storage.cluster import is_cluster

log = logging.getLogger("glint.realtime")

OnMessage = Callable[[bytes, bytes], None]
OnSubscribed = Callable[[bytes], None]
OnReconnect = Callable[[object], Awaitable[None]]


def queue_publish(redis: Any, pipe: Any, channel: str, data: bytes) -> None:
    """Queue a publish to a bus channel on a pipeline of this client: SPUBLISH on a cluster."""
    if is_cluster(redis):
        pipe.spublish(channel, data)
    else:
        pipe.publish(channel, data)


# ARGV[1]: n, the distinct messages; ARGV[2..n+1]: the messages; then (channel, message number)
# pairs. Publishes each in order; returns each one's receiver count. One command for a fan-out,
# where a pipeline is a command per channel, each packed and its reply parsed on its own.
_PUBLISH_MANY = """
local n = tonumber(ARGV[1])
local out = {}
for i = n + 2, #ARGV, 2 do
    out[#out + 1] = redis.call('PUBLISH', ARGV[i], ARGV[1 + tonumber(ARGV[i + 1])])
end
return out
"""


class Bus:
    """Subscribe, unsubscribe and publish on the bus; incoming messages go to `on_message`,
    subscription confirmations to `on_subscribed`, and `on_reconnect` runs after a connection
    was lost and made again (what was published meanwhile is gone)."""

    def __init__(self, redis: Any, *, on_message: OnMessage, on_subscribed: OnSubscribed,
                 on_reconnect: OnReconnect) -> None:
        self.redis = redis
        self.on_message = on_message
        self.on_subscribed = on_subscribed
        self.on_reconnect = on_reconnect
        self.sharded = is_cluster(redis)
        self._pubsub: PubSub | None = None
        self._shards: dict[str, _Shard] = {}
        self._where: dict[str, str] = {}  # shard channel -> the primary it is subscribed on
        self._tasks: list[asyncio.Task] = []
        self._publish_many = None if self.sharded else redis.register_script(_PUBLISH_MANY)

    # ------------------------------------------------------------ publishing

    async def publish_many(self, items: list[tuple[str, bytes]]) -> list[int]:
        """Publish messages to channels in order; per item, how many processes took it. On one
        node a single script call carries them all, each distinct message once; on a cluster a
        pipeline of SPUBLISH (a script may touch one slot only)."""
        if not items:
            return []
        if self._publish_many is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for channel, data in items:
                    pipe.spublish(channel, data)
                return [int(n) for n in await pipe.execute()]
        numbers: dict[bytes, int] = {}
        pairs: list[str | bytes | int] = []
        for channel, data in items:
            number = numbers.get(data)
            if number is None:
                number = numbers[data] = len(numbers) + 1
            pairs += (channel, number)
        return [int(n) for n in await self._publish_many(args=[len(numbers), *numbers, *pairs])]

    def queue_publish(self, pipe: Any, channel: str, data: bytes) -> None:
        """Queue a publish on a pipeline (its reply: how many processes hold the channel)."""
        queue_publish(self.redis, pipe, channel, data)

    async def publish(self, channel: str, data: bytes) -> int:
        """Publish one message now."""
        if self.sharded:
            return await self.redis.spublish(channel, data)
        return await self.redis.publish(channel, data)

    # ------------------------------------------------------------ subscribing

    async def start(self, own_channel: str) -> None:
        """Connect. On one node the connection is made by subscribing to this process's own
        channel, so it never stands unsubscribed; on a cluster the slot map is read now (a
        channel's primary is looked up in it) and connections are made per primary as channels
        need them."""
        if self.sharded:
            await self.redis.initialize()
            return
        self._pubsub = self.redis.pubsub()
        # subscribed before the listener starts, so redis-py never health-checks on a live reader
        await self._pubsub.subscribe(own_channel)
        # called on every reconnect after this first connection (redis-py resubscribes first)
        self._pubsub.connection.register_connect_callback(self.on_reconnect)
        self._tasks.append(asyncio.create_task(self._listen(self._pubsub, None), name="ws-bus-listener"))

    async def subscribe(self, channel: str) -> None:
        """Subscribe (the confirmation arrives through `on_subscribed`)."""
        if not self.sharded:
            await self._pubsub.subscribe(channel)
            return
        node = self.redis.get_node_from_key(channel)
        shard = self._shards.get(node.name)
        if shard is None:
            shard = self._shards[node.name] = _Shard(self, node)
        self._where[channel] = node.name
        await shard.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe."""
        if not self.sharded:
            await self._pubsub.unsubscribe(channel)
            return
        name = self._where.pop(channel, None)
        if name is not None:
            await self._shards[name].pubsub.sunsubscribe(channel)

    async def close(self) -> None:
        """Stop the readers and close the connections."""
        for task in self._tasks:
            task.cancel()
        for shard in self._shards.values():
            if shard.task is not None:
                shard.task.cancel()
        for task in [*self._tasks, *(s.task for s in self._shards.values() if s.task is not None)]:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self._pubsub is not None:
            await self._pubsub.aclose()
        for shard in self._shards.values():
            await shard.close()

    # ------------------------------------------------------------ reading

    async def _listen(self, pubsub: PubSub, shard: _Shard | None) -> None:
        while True:
            try:
                async for kind, channel, data in received(pubsub):
                    if kind in ("message", "smessage"):
                        self.on_message(channel, data)
                    elif kind in ("subscribe", "ssubscribe"):
                        self.on_subscribed(channel)
                    elif kind == "sunsubscribe" and shard is not None:
                        channel = channel.decode()
                        if self._where.get(channel) == shard.node.name:  # not asked for: its slot moved
                            await self._reroute()
                if shard is None:
                    return
                await shard.wake.wait()  # nothing subscribed on this primary: wait for a channel
                shard.wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus listener failed; reconnecting")
                await asyncio.sleep(0.5)
                if shard is not None:
                    await self._reroute()

    async def _reroute(self) -> None:
        """Read the cluster's slot map again and move every channel whose slot another primary
        owns now; then tell the sockets here to resync (frames may have been lost meanwhile)."""
        try:
            await self.redis.nodes_manager.initialize()
            moved = [(channel, name) for channel, name in self._where.items()
                     if self.redis.get_node_from_key(channel).name != name]
            for channel, name in moved:
                try:
                    await self._shards[name].pubsub.sunsubscribe(channel)
                except Exception:
                    pass  # the old owner may be gone: its connection is dropped with it
                await self.subscribe(channel)
            if moved:
                log.warning("bus: %d channel(s) moved to another primary", len(moved))
                await self.on_reconnect(None)
        except Exception:
            log.exception("bus: reading the cluster's slot map failed")


_MESSAGES = {b"message": "message", b"smessage": "smessage"}


async def received(pubsub: PubSub) -> AsyncIterator[tuple[str, Any, Any]]:
    """What arrives on a subscriber connection, as (type, channel, data), in order: what
    PubSub.listen gives, except that the replies one read brought beyond the first are taken from
    the connection's hiredis reader at once, and a message skips redis-py's bookkeeping of each
    (a dict, a metric, a debug line of its whole payload), which a fan-out pays hundreds of times.
    Subscription replies still go through redis-py, which keeps its state from them."""
    while pubsub.subscribed:
        response = await pubsub.parse_response(block=True)
        while response is not None:
            if isinstance(response, list) and len(response) == 3 and response[0] in _MESSAGES:
                yield _MESSAGES[response[0]], response[1], response[2]
            else:
                message = await pubsub.handle_message(response)
                if message is not None:
                    yield message["type"], message["channel"], message["data"]
            response = _buffered(pubsub)


def _buffered(pubsub: PubSub) -> Any:
    """The next reply the subscriber connection's hiredis reader already holds whole, else None
    (also without hiredis: then each reply is read by redis-py)."""
    conn = pubsub.connection
    parser = getattr(conn, "_parser", None)
    if not isinstance(parser, _AsyncHiredisParser) or parser._reader is None:
        return None
    while True:
        response = parser._reader.gets()
        if response is False or response is NOT_ENOUGH_DATA:
            return None
        if isinstance(response, Exception):
            raise response
        if not (conn.health_check_interval and response in pubsub.health_check_response):
            return response


class _ShardPubSub(PubSub):
    """A primary's subscriber connection. On reconnect redis-py sends one SSUBSCRIBE for all
    channels held, which the server refuses when they span slots: one per slot instead."""

    async def _resubscribe_shard_channels(self) -> None:
        by_slot: defaultdict[int, dict] = defaultdict(dict)
        for channel, handler in self.shard_channels.items():
            by_slot[key_slot(self.encoder.encode(channel))][channel] = handler
        for subscriptions in by_slot.values():
            await self._resubscribe(subscriptions, self.ssubscribe)


class _Shard:
    """One primary's subscriber connection and its reader task."""

    def __init__(self, bus: Bus, node: Any) -> None:
        self.bus = bus
        self.node = node
        kwargs = {k: v for k, v in node.connection_kwargs.items() if k not in ("host", "port")}
        self.pool = ConnectionPool(host=node.host, port=node.port, **kwargs)
        self.pubsub = _ShardPubSub(connection_pool=self.pool, encoder=bus.redis.encoder)
        self.task: asyncio.Task | None = None
        self.wake = asyncio.Event()

    async def subscribe(self, channel: str) -> None:
        first = self.pubsub.connection is None
        await self.pubsub.ssubscribe(channel)
        if first:
            self.pubsub.connection.register_connect_callback(self.bus.on_reconnect)
        self.wake.set()
        if self.task is None:
            self.task = asyncio.create_task(self.bus._listen(self.pubsub, self),
                                            name=f"ws-bus-listener-{self.node.name}")

    async def close(self) -> None:
        await self.pubsub.aclose()
        await self.pool.aclose()

