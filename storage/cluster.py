"""What differs between one Redis node and a Redis Cluster, in one place.

glint's keys carry the user (or post) id as a hash tag, so the keys one operation touches together
(a user's rate counter and auth markers, presence sets, a timeline) share a cluster slot. What
still spans slots is said here: MGET of many posts' cache entries goes per slot, a script over
many users' timelines is called once per slot, and redis-py's cluster pipeline refuses MGET and
EVALSHA by name, so they are queued as raw commands (each names keys of one slot only). On one
node every helper keeps the single round trip it had.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.crc import key_slot
from redis.exceptions import NoScriptError


def is_cluster(redis: Any) -> bool:
    """Is this client a Redis Cluster client?"""
    return isinstance(redis, RedisCluster)


async def mget(redis: Redis | RedisCluster, keys: Sequence[str]) -> list[Any]:
    """MGET: one command on a node; on a cluster one per slot, pipelined per node (the keys are
    of different posts, so different slots)."""
    if is_cluster(redis):
        return await redis.mget_nonatomic(keys)
    return await redis.mget(keys)


def queue_mget(pipe: Any, keys: Sequence[str]) -> None:
    """Queue an MGET of keys that share a slot on a pipeline of either kind."""
    pipe.execute_command("MGET", *keys)


def slot_groups(redis: Any, keys: Sequence[str]) -> list[Sequence[str]]:
    """The keys split into groups that each lie in one slot (on a node: all of them, one group)."""
    if not is_cluster(redis):
        return [keys]
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(key_slot(key.encode()), []).append(key)
    return list(groups.values())


async def queue_script(redis: Any, pipe: Any, script: AsyncScript, keys: Sequence[str],
                       args: Sequence[Any]) -> None:
    """Queue a script call on a pipeline. On a node redis-py loads the script before the
    pipeline runs; on a cluster the call is a raw EVALSHA, and `run_scripted` loads the script
    on every primary if one of them does not know it."""
    if is_cluster(redis):
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    else:
        await script(keys=keys, args=args, client=pipe)


async def run_scripted(redis: Any, script: AsyncScript, queue: Callable[[Any], Awaitable[None]]) -> list[Any]:
    """Run a pipeline that `queue(pipe)` fills with queue_script calls. On a cluster a primary
    that does not hold the script yet (a new or restarted node) answers NOSCRIPT: the script is
    then loaded on every primary and the pipeline runs once more (its calls must be safe to repeat)."""
    for attempt in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            await queue(pipe)
            try:
                return await pipe.execute()
            except NoScriptError:
                if attempt or not is_cluster(redis):
                    raise
        await redis.script_load(script.script)
    raise AssertionError("unreachable")
