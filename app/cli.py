"""The `glint` command."""

from __future__ import annotations

import argparse
import errno
import asyncio
import logging
import os
import sys
from pathlib import Path

from app.config import Config, ConfigError, check_secrets, load_config, stack_dir
from app.fdlimit import raise_open_file_limit
from app.tracing import setup_tracing

log = logging.getLogger("glint")


SECRET_SETTINGS = {"GLINT_JWT_SECRET", "GLINT_TWO_FACTOR_KEY", "GLINT_S3_ACCESS_KEY", "GLINT_S3_SECRET_KEY"}


def _config(*, secrets: bool = False, **overrides: object) -> Config:
    """The decoded Config; with secrets=True (a server) also the JWT secret it signs with."""
    try:
        config = load_config(**overrides)
        if secrets:
            check_secrets(config)
        return config
    except ConfigError as exc:
        sys.exit(f"glint: bad configuration: {exc}")


async def _pending(config: Config) -> list[str]:
    import asyncpg

    from storage import db

    conn = await asyncpg.connect(config.database.url, timeout=10)
    try:
        return await db.pending_migrations(conn)
    finally:
        await conn.close()


def _require_migrated(config: Config) -> None:
    try:
        pending = asyncio.run(_pending(config))
    except (OSError, asyncio.TimeoutError) as exc:
        sys.exit(f"glint: cannot reach PostgreSQL at {config.database.url}: {exc}")
    except Exception as exc:
        sys.exit(f"glint: cannot read the schema version from {config.database.url}: {exc}")
    if pending:
        sys.exit(f"glint: the database is not migrated ({len(pending)} migration(s) pending, "
                 f"first {pending[0]}); run `glint migrate` first.")


def run_server(app, host: str, port: int, shutdown_timeout: float, banner: str | None = None) -> None:
    """Serve an app on uvloop until SIGTERM/SIGINT: stop accepting, let in-flight requests finish
    within the deadline, close websockets (GOING_AWAY), run the clean-ups (the producer flushes).
    `banner` is printed once the port is listening."""
    import gc

    import uvloop
    from aiohttp import web

    def announce(_: str) -> None:
        print(banner, flush=True)

    async def freeze_startup_objects(_: web.Application) -> None:
        # what start-up made (modules, the app, pools) lives as long as the process: out of the
        # collector's sight, a full collection no longer walks it; and a collection of the young
        # generation every 10,000 allocations instead of 700 (a page allocates thousands, nearly
        # all freed by reference counting at once), so the collector stops costing a page's CPU
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)

    app.on_startup.append(freeze_startup_objects)
    try:
        web.run_app(app, host=host, port=port, print=announce if banner else None, access_log=None,
                    shutdown_timeout=shutdown_timeout, loop=uvloop.new_event_loop(), handle_signals=True)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise SystemExit(f"glint: port {port} on {host} is in use by another process; stop it, or serve on "
                         "another port: GLINT_PORT=PORT (make run GLINT_PORT=PORT), or --port PORT") from None


def serve_banner(config: Config) -> str:
    """Where things are, printed when `glint serve` is listening (the first screen of `make run`)."""
    from pathlib import Path

    server = config.server
    base = f"http://{'127.0.0.1' if server.host in ('0.0.0.0', '::') else server.host}:{server.port}"
    built = (Path(__file__).resolve().parents[1] / "web" / "dist" / "index.html").exists()
    web_line = f"{base}/" if built else "not built: install Node.js 18+ and `make run` builds it"
    return "\n".join([
        f"glint is serving on {base}",
        f"  web app     {web_line}",
        f"  API docs    {base}/api/docs/   (OpenAPI: {base}/api/openapi.json)",
        f"  health      {base}/readyz   metrics: {base}/metrics",
        f"  admin       make createsuperuser USERNAME=you EMAIL=you@example.com, then {base}/admin/",
        f"  stack       {stack_dir()} (glint stack status; make stop stops it)",
    ])


def cmd_serve(args: argparse.Namespace) -> None:
    """REST + websocket (+ consumers and jobs unless --no-consumers)."""
    from app.main import create_app
    from app.middlewares import setup_logging

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    config = _config(secrets=True, **overrides)
    setup_logging(config.server.log_level)
    raise_open_file_limit()  # a socket is a file: hold as many as the hard limit allows
    _require_migrated(config)
    stop_tracing = setup_tracing(config, "glint-api" if args.no_consumers else "glint")
    app = create_app(config, consumers=not args.no_consumers)
    log.info("serving on http://%s:%d", config.server.host, config.server.port)
    try:
        server = config.server
        run_server(app, server.host, server.port, server.shutdown_timeout, banner=serve_banner(config))
    finally:
        stop_tracing()


def cmd_consume(args: argparse.Namespace) -> None:
    """Consumers and jobs only, with /healthz, /readyz and /metrics on the side port."""
    from app.main import create_app
    from app.middlewares import setup_logging

    overrides = {k: v for k, v in (("host", args.host), ("consumer_port", args.port)) if v is not None}
    config = _config(secrets=True, **overrides)
    setup_logging(config.server.log_level)
    _require_migrated(config)
    stop_tracing = setup_tracing(config, "glint-consumer")
    app = create_app(config, consumers=True, http=False)
    log.info("consuming; operations on http://%s:%d", config.server.host, config.server.consumer_port)
    try:
        run_server(app, config.server.host, config.server.consumer_port, config.server.shutdown_timeout)
    finally:
        stop_tracing()


def cmd_migrate(args: argparse.Namespace) -> None:
    """Apply pending migrations."""
    import asyncpg

    from storage import db

    config = _config()

    async def run() -> list[str]:
        conn = await asyncpg.connect(config.database.url, timeout=10)
        try:
            return await db.migrate(conn)
        finally:
            await conn.close()

    try:
        applied = asyncio.run(run())
    except OSError as exc:
        sys.exit(f"glint: cannot reach PostgreSQL at {config.database.url}: {exc}")
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


def superuser_password(environ: dict[str, str] | None = None) -> str:
    """GLINT_SUPERUSER_PASSWORD when set (non-interactive), else asked twice on the terminal."""
    environ = os.environ if environ is None else environ
    if environ.get("GLINT_SUPERUSER_PASSWORD"):
        return environ["GLINT_SUPERUSER_PASSWORD"]
    import getpass

    if not sys.stdin.isatty():
        sys.exit("glint: no terminal to read the password from; set GLINT_SUPERUSER_PASSWORD")
    password = getpass.getpass("Password: ")
    if password != getpass.getpass("Password (again): "):
        sys.exit("glint: the passwords differ")
    return password


def cmd_createsuperuser(args: argparse.Namespace) -> None:
    """Make an admin account."""
    from handlers.admin import create_superuser
    from handlers.common import ApiError
    from storage import db

    config = _config()
    _require_migrated(config)
    password = superuser_password()

    async def run() -> int:
        async with await db.create_pool(config.database.url, min_size=1, max_size=2) as pool:  # closed on exit
            return (await create_superuser(pool, args.username, args.email, password))["id"]

    try:
        user_id = asyncio.run(run())
    except ApiError as exc:
        sys.exit(f"glint: {exc.message}")
    print(f"admin {args.username} created (id {user_id})")


def _stack_port(text: str) -> tuple[str, int]:
    """`postgres=55432` for `glint stack up --port`."""
    from devstack import DEFAULT_PORTS

    name, _, port = text.partition("=")
    if name not in DEFAULT_PORTS:
        raise argparse.ArgumentTypeError(f"{name!r} is not a port of the stack (one of {', '.join(DEFAULT_PORTS)})")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: give SERVICE=PORT, a port from 1 to 65535")
    return name, int(port)


def cmd_stack(args: argparse.Namespace) -> None:
    """The local stack of real servers from PyPI wheels."""
    import devstack

    root = stack_dir()
    if args.port and args.action != "up":
        sys.exit(f"glint stack {args.action}: --port is for `glint stack up`")
    if args.action == "up":
        services = list(devstack.SERVICES) + (["osmem"] if args.with_elasticsearch else [])
        ports = dict(args.port or [])
        twice = sorted({port for port in ports.values() if list(ports.values()).count(port) > 1})
        if twice:
            sys.exit(f"glint: --port names port {twice[0]} for more than one service")
        try:
            env = devstack.up(root, ports=ports or None, services=services, defaults=True)
        except devstack.PortsInUse as exc:
            key = next(iter(exc.ports))
            sys.exit(f"glint: {exc}; stop that process or choose another port: glint stack up --port {key}=PORT")
        except RuntimeError as exc:
            sys.exit(f"glint: {exc} (logs in {root / 'logs'})")
        print(f"stack is up; settings in {root / 'stack.env'} (readable by its owner only)")
        for key, value in env.items():  # the secrets stay in the file, out of terminals and CI logs
            print(f"  {key}={'(secret, in stack.env)' if key in SECRET_SETTINGS else value}")
    elif args.action == "down":
        devstack.down(root)
        print("stack is down (data kept in %s)" % root)
    else:
        rows = devstack.status(root)
        if not rows:
            print("no stack here; run `glint stack up`")
            sys.exit(1)
        dead = [r.name for r in rows if not r.alive]
        for r in rows:
            print(f"  {r.name:<14} pid {r.pid!s:<8} port {r.port!s:<6} {'up' if r.alive else 'DEAD'}")
        if dead:
            print("dead: " + ", ".join(dead))
            sys.exit(1)


def cmd_bench(args: argparse.Namespace) -> None:
    """Seed benchmark data or run a load scenario (bench/README.md)."""
    from bench.cli import run

    run(args, _config())


def cmd_search(args: argparse.Namespace) -> None:
    """`search reindex`: rebuild the Elasticsearch indexes from PostgreSQL, in batches."""
    config = _config()
    if config.search.backend != "elasticsearch":
        sys.exit("glint: the search backend is postgres, whose index is generated columns: nothing to rebuild "
                 "(set GLINT_SEARCH_BACKEND=elasticsearch)")
    _require_migrated(config)
    asyncio.run(_reindex(config, args.kind or ["users", "posts", "hashtags", "locations"], args.batch))


async def _reindex(config: Config, kinds: list[str], batch: int) -> None:
    from tqdm import tqdm

    from app.clients import reindex_search

    bars: dict[str, tqdm] = {}

    def progress(kind: str, total: int, done: int) -> None:
        if kind not in bars:
            bars[kind] = tqdm(total=total, desc=kind, unit="doc")
        bars[kind].update(done)

    try:
        await reindex_search(config, kinds, batch, progress)
    finally:
        for bar in bars.values():
            bar.close()


def cmd_backup(args: argparse.Namespace) -> None:
    """One archive: a pg_dump of the database and every S3 object, with a manifest of checksums."""
    from app import backup

    config = _config()
    out = Path(args.out) if args.out else backup.default_archive_name()
    try:
        asyncio.run(backup.backup(config, out))
    except backup.BackupError as exc:
        sys.exit(f"glint: backup failed: {exc}")


def cmd_restore(args: argparse.Namespace) -> None:
    """Load an archive into an empty stack (or, with --force, over one that holds data)."""
    from app import backup

    config = _config()
    try:
        asyncio.run(backup.restore(config, Path(args.file), force=args.force))
    except backup.BackupError as exc:
        sys.exit(f"glint: restore refused: {exc}")
    except (OSError, asyncio.TimeoutError) as exc:
        sys.exit(f"glint: restore failed: cannot reach a store: {exc}")


def cmd_events(args: argparse.Namespace) -> None:
    """`events dead-letters list | replay`: the events consumers gave up on."""
    config = _config()
    _require_migrated(config)
    if args.action == "replay" and not (args.ids or args.all or args.consumer):
        sys.exit("glint events dead-letters replay: name letter ids, or --consumer NAME, or --all")
    try:
        sys.exit(asyncio.run(_dead_letters(config, args)))
    except OSError as exc:
        sys.exit(f"glint: cannot reach PostgreSQL at {config.database.url}: {exc}")


def _letter_line(letter) -> str:
    state = ("replayed " + letter.replayed_at.isoformat(timespec="seconds") if letter.replayed_at
             else "due " + letter.next_attempt_at.isoformat(timespec="seconds") if letter.next_attempt_at
             else "waits for replay")
    return (f"{letter.id:>20}  {letter.consumer:<14} {letter.event.type:<24} {letter.kind:<9} "
            f"replays {letter.replays:<3} {state}  {letter.error[:100]}")


async def _dead_letters(config: Config, args: argparse.Namespace) -> int:
    import msgspec

    from storage import db, deadletters

    pool = await db.create_pool(config.database.url, min_size=1, max_size=2)
    try:
        if args.action == "list":
            letters = await deadletters.list_letters(pool, include_replayed=args.all, consumer=args.consumer,
                                                     limit=args.limit)
            if args.json:
                print(msgspec.json.encode(letters).decode())
            else:
                for letter in letters:
                    print(_letter_line(letter))
                print(f"{len(letters)} letter(s)" + ("" if args.all else " pending"))
            return 0
        before = {letter.id: letter.replays for letter in await deadletters.get(pool, args.ids)} if args.ids else {}
        ids = await deadletters.schedule_now(pool, None if args.all or not args.ids else args.ids, args.consumer)
        if not ids:
            print("nothing to replay")
            return 0
        if not before:
            before = {letter.id: letter.replays for letter in await deadletters.get(pool, ids)}
        print(f"{len(ids)} letter(s) scheduled; a process running the consumers (`glint serve` or "
              "`glint consume`) replays them")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.wait
        while True:
            letters = await deadletters.get(pool, ids)
            settled = [x for x in letters if x.replayed_at is not None or x.replays > before.get(x.id, 0)]
            if len(settled) == len(letters) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.2)
        for letter in letters:
            print(_letter_line(letter))
        failed = [x for x in letters if x.replayed_at is None]
        if failed:
            print(f"{len(failed)} letter(s) not replayed" + ("" if len(settled) == len(letters)
                                                             else " yet (is a consuming process running?)"))
            return 1
        print(f"{len(letters)} letter(s) replayed")
        return 0
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="glint", description="glint: a social backend for chat-heavy clients")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve REST + websocket (and consumers, jobs)")
    serve.add_argument("--no-consumers", action="store_true", help="serve requests only")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(func=cmd_serve)

    consume = sub.add_parser("consume", help="run the Kafka consumers and periodic jobs")
    consume.add_argument("--host", default=None)
    consume.add_argument("--port", type=int, default=None, help="operations port (default GLINT_CONSUMER_PORT)")
    consume.set_defaults(func=cmd_consume)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    superuser = sub.add_parser("createsuperuser", help="make an admin account (password: terminal or "
                                                      "GLINT_SUPERUSER_PASSWORD)")
    superuser.add_argument("--username", required=True)
    superuser.add_argument("--email", required=True)
    superuser.set_defaults(func=cmd_createsuperuser)

    stack_p = sub.add_parser("stack", help="the local stack (PostgreSQL, Valkey, S3, Kafka) under .glint/")
    stack_p.add_argument("action", choices=["up", "down", "status"])
    stack_p.add_argument("--with-elasticsearch", action="store_true", help="also start osmem-server")
    stack_p.add_argument("--port", action="append", type=_stack_port, metavar="SERVICE=PORT",
                         help="up: this port for this service, or an error if it is taken (repeatable; "
                              "default: the recorded port, else the default one, else a free one)")
    stack_p.set_defaults(func=cmd_stack)

    search_p = sub.add_parser("search", help="search index maintenance (Elasticsearch backend)")
    search_p.add_argument("action", choices=["reindex"])
    search_p.add_argument("--kind", action="append", choices=["users", "posts", "hashtags", "locations"],
                          help="only this index (repeatable; default all)")
    search_p.add_argument("--batch", type=int, default=1000, help="rows per bulk request (default 1000)")
    search_p.set_defaults(func=cmd_search)

    events_p = sub.add_parser("events", help="the event backbone: dead letters")
    events_sub = events_p.add_subparsers(dest="events_command", required=True)
    letters_p = events_sub.add_parser("dead-letters", help="list or replay the events consumers gave up on")
    letters_p.add_argument("action", choices=["list", "replay"])
    letters_p.add_argument("ids", nargs="*", type=int, help="replay: these letters")
    letters_p.add_argument("--all", action="store_true", help="list: replayed ones too; replay: every pending letter")
    letters_p.add_argument("--consumer", default=None, help="only this consumer's letters (feed, notifications, ...)")
    letters_p.add_argument("--limit", type=int, default=100, help="list: at most this many (default 100)")
    letters_p.add_argument("--json", action="store_true", help="list: as JSON")
    letters_p.add_argument("--wait", type=float, default=30.0,
                           help="replay: seconds to wait for the outcome (default 30)")
    letters_p.set_defaults(func=cmd_events)

    backup_p = sub.add_parser("backup", help="write one archive of PostgreSQL and the S3 media")
    backup_p.add_argument("--out", default=None, help="archive path (default glint-backup-<time>.tar here)")
    backup_p.set_defaults(func=cmd_backup)

    restore_p = sub.add_parser("restore", help="load a backup archive into an empty stack")
    restore_p.add_argument("file", help="an archive written by `glint backup`")
    restore_p.add_argument("--force", action="store_true", help="replace the data of a stack that is not empty")
    restore_p.set_defaults(func=cmd_restore)

    from bench.cli import add_arguments as add_bench_arguments

    bench_p = sub.add_parser("bench", help="seed benchmark data and run load scenarios (bench/README.md)")
    add_bench_arguments(bench_p)
    bench_p.set_defaults(func=cmd_bench)

    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    args.func(args)


if __name__ == "__main__":
    main()
