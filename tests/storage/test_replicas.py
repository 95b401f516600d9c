"""Read replicas against a real streaming replica: lag-tolerant reads are served from it, a
user's reads right after their own write stay on the primary, and a replica that lags past the
bound or is down is skipped (then used again once it has caught up)."""

from __future__ import annotations

import asyncpg

import devstack
from app.main import create_app
from handlers.context import replicas_key
from tests.conftest import make_config, wait_for
from tests.support import user_with_token


async def test_reads_go_to_the_replica_except_after_a_write_and_while_it_lags(
        aiohttp_client, stack_env, database_url, redis_clean, replica_base_url):
    name = database_url.rsplit("/", 1)[1]
    down = f"postgresql://glint@127.0.0.1:{devstack.free_port()}/{name}"  # nothing listens there
    config = make_config(stack_env, database_url=database_url,
                         database_replica_urls=f"{replica_base_url}/{name},{down}",
                         replica_max_lag=60.0, replica_check_seconds=0.05, read_your_writes_seconds=0.5)
    client = await aiohttp_client(create_app(config))
    replicas = client.app[replicas_key]
    ana, ana_headers = await user_with_token(client)
    bob, bob_headers = await user_with_token(client)

    async def replica_has_the_database() -> bool:  # its CREATE DATABASE may not be replayed yet
        conn = await asyncpg.connect(f"{replica_base_url}/postgres")
        try:
            return await conn.fetchval("SELECT true FROM pg_database WHERE datname = $1", name) is True
        finally:
            await conn.close()

    await wait_for(replica_has_the_database)
    replica = await asyncpg.connect(f"{replica_base_url}/{name}")

    async def bio_seen_by(headers) -> str:
        response = await client.get(f"/api/accounts/users/{ana['id']}/", headers=headers)
        assert response.status == 200, await response.text()
        return (await response.json())["bio"]

    async def replica_bio() -> str | None:
        return await replica.fetchval("SELECT bio FROM users WHERE id = $1", int(ana["id"]))

    try:
        await wait_for(lambda: len(replicas.usable) == 1)
        assert replicas.lags[1] == float("inf")  # the replica that is down is skipped

        async def replicated() -> bool:
            return await replica_bio() is not None
        await wait_for(replicated)
        await replica.execute("SELECT pg_wal_replay_pause()")  # from here the replica falls behind

        updated = await client.patch("/api/accounts/users/me/", json={"bio": "fresh"}, headers=ana_headers)
        assert updated.status == 200, await updated.text()
        assert await replica_bio() == ""
        # read-your-writes: ana reads her own write at once, from the primary
        assert await bio_seen_by(ana_headers) == "fresh"
        # bob's read tolerates lag: it is served by the (stale) replica
        assert await bio_seen_by(bob_headers) == ""
        # once ana's window is over, her reads go to the replica too

        async def ana_reads_the_replica() -> bool:
            return await bio_seen_by(ana_headers) == ""
        await wait_for(ana_reads_the_replica, timeout=5)

        # a replica further behind than the bound is skipped: everyone reads the primary
        replicas.max_lag = 0.2
        await wait_for(lambda: not replicas.usable)
        assert await bio_seen_by(bob_headers) == "fresh"

        # caught up again, it is used again
        await replica.execute("SELECT pg_wal_replay_resume()")
        await wait_for(lambda: len(replicas.usable) == 1)

        async def replayed() -> bool:
            return await replica_bio() == "fresh"
        await wait_for(replayed)
        assert await bio_seen_by(bob_headers) == "fresh"
    finally:
        await replica.execute("SELECT pg_wal_replay_resume()")
        await replica.close()

