"""The clients app/clients.py makes, as the process uses them."""

from __future__ import annotations

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
