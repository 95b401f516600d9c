"""The clients app/clients.py makes, as the process uses them."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from app.clients import HiredisPacking


async def test_redis_commands_are_packed_by_hiredis_into_the_same_bytes_with_the_same_refusals(redis_clean: Redis):
    conn = redis_clean.connection_pool.make_connection()
    assert isinstance(conn, HiredisPacking)
    many = ("EVALSHA", "a" * 40, 0, "3", 1.5, -3, 10**20, "é☃ \n", b"\x00\xff\r\n",
            *(part for n in range(200) for part in (f"user:{{{n}}}", n % 3 + 1)))
    for args in (many, ("CONFIG GET", "maxmemory"), (b"CONFIG GET", b"maxmemory"), ("PING",)):
        assert b"".join(conn.pack_command(*args)) == b"".join(Connection.pack_command(conn, *args))
    # what hiredis does not take goes to redis-py's packer: packed, or refused as it always was
    assert b"".join(conn.pack_command("SET", "k", memoryview(b"v"))) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    for bad in (None, True):
        with pytest.raises(DataError):
            conn.pack_command("SET", "k", bad)
    with pytest.raises(UnicodeEncodeError):
        conn.pack_command("SET", "k", chr(0xD800))  # a lone surrogate

    # and through Valkey: every byte value, a script call with hundreds of arguments, a pipeline
    await redis_clean.set("bytes", bytes(range(256)))
    assert await redis_clean.get("bytes") == bytes(range(256))
    echo = redis_clean.register_script("return #ARGV")
    assert await echo(args=list(range(500))) == 500
    async with redis_clean.pipeline(transaction=False) as pipe:
        pipe.incrby("n", 2).incrby("n", 3).get("n")
        assert await pipe.execute() == [2, 5, b"5"]


async def test_redis_commands_are_written_at_once_and_a_valkey_that_stops_reading_still_times_out(
        stack_env: dict[str, str], redis_clean: Redis, monkeypatch):
    from app.clients import open_redis
    from redis.exceptions import TimeoutError as RedisTimeout
    from tests.conftest import make_config

    waits = []
    real_wait_for = asyncio.wait_for

    def counted_wait_for(*args, **kwargs):
        waits.append(args)
        return real_wait_for(*args, **kwargs)

    monkeypatch.setattr(asyncio, "wait_for", counted_wait_for)

    # a live Valkey: commands, a script and a pipeline, none of them sent under wait_for
    await redis_clean.set("k", "v")
    assert await redis_clean.get("k") == b"v"
    async with redis_clean.pipeline(transaction=False) as pipe:
        assert await pipe.incr("n").incr("n").execute() == [1, 2]
    assert waits == []

    # a server that answers the connection's set-up, then stops reading until it is released
    reading, released, handlers = asyncio.Event(), asyncio.Event(), []
    reading.set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())
        while (data := await reader.read(65536)) and reading.is_set():
            commands = data.startswith(b"*") + data.count(b"\r\n*")  # the set-up's are pipelined
            writer.write(b"+OK\r\n" * commands)
        await released.wait()
        while await reader.read(1 << 20):  # take what the client still had to send, to its close
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stalled = open_redis(make_config(stack_env, redis_url=f"redis://127.0.0.1:{port}/0"),
                         socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=0)
    async with asyncio.timeout(30):  # a guard against a hang, not a timing
        try:
            assert await stalled.set("a", "b") is True
            reading.clear()
            with pytest.raises(RedisTimeout):
                await stalled.set("big", b"x" * (32 << 20))  # more than the socket buffers take
        finally:
            await stalled.aclose()
            released.set()
            await asyncio.gather(*handlers)
            server.close()
            await server.wait_closed()
