"""PostgreSQL: the pool, the migrations runner and the ids.

Migrations are the numbered SQL files in the `migrations` package, applied in order under an
advisory lock (so two processes migrating at once apply each file once) and recorded in
`schema_migrations`.
"""

from __future__ import annotations

import json
import logging
from importlib import resources

import asyncpg

log = logging.getLogger("glint.db")

MIGRATION_LOCK = 0x67_6C_69_6E_74  # "glint"


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Connection(asyncpg.Connection):
    """A pooled connection returned without the reset query (UNLISTEN, RESET ALL, advisory unlock,
    CLOSE ALL): glint leaves no session state behind (its advisory locks are transaction-scoped or
    on connections of their own), and that query cost a round trip per acquire. An open
    transaction is still rolled back and listeners are still removed."""

    def get_reset_query(self) -> str:
        return ""


GENERIC_PLAN_QUERIES = 1000  # queries a connection of generic plans runs before it is made anew


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20,
                      generic_plans: bool = False) -> asyncpg.Pool:
    """An asyncpg pool whose connections decode json/jsonb.

    With `generic_plans` its prepared statements are planned once per connection (plan_cache_mode
    force_generic_plan), not at every execution: for a pool that runs a hot statement whose plan
    does not depend on its values. A plan made on small tables (a fresh database) would scan them
    whole, and go on scanning them as they grow: the message writer's batch statement, planned
    while `messages` held a few thousand rows, hash-joined a sequential scan of the whole table for
    its duplicate check, and a connection keeps its plan for its life. So sequential scans are off
    on these connections (PostgreSQL still makes one where no index serves), and the plan uses
    the indexes at every table size; each connection is still replaced after GENERIC_PLAN_QUERIES
    queries, so that the plan follows the tables' statistics."""
    planned_once = ({"max_queries": GENERIC_PLAN_QUERIES,
                     "server_settings": {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}}
                    if generic_plans else {})
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection,
                                     connection_class=Connection, **planned_once)


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in order."""
    folder = resources.files("migrations")
    files = sorted(p for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(p.name, p.read_text()) for p in files]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet recorded; return their names."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            log.info("applied migration %s", name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    """Names of migrations the database has not applied."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done = set()
    if exists:
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
    return [name for name, _ in migration_files() if name not in done]
