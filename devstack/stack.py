"""Bringing the whole stack up and down in one folder, and one service at a time."""
from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Mapping

from devstack import osmem, postgres, process, seaweedfs, tansu, valkey
from devstack.ports import DEFAULT_PORTS, move_taken, resolve_ports, taken_port
from devstack.process import Log, Service
from devstack.state import LOCK, ServiceStatus, StackState, read_state, write_env, write_state

SERVICES = ("postgres", "redis", "s3", "kafka")
ALL_SERVICES = ("postgres", "redis", "s3", "kafka", "osmem")

_BY_NAME: dict[str, Service] = {s.name: s for s in (postgres.SERVICE, valkey.SERVICE, seaweedfs.SERVICE,
                                                      tansu.SERVICE, osmem.SERVICE)}


class PortsInUse(RuntimeError):
    """Ports the stack must use (asked for, or of a service another still running one dials) that
    another process holds: `ports` maps each port's key (DEFAULT_PORTS) to the taken port."""

    def __init__(self, ports: Mapping[str, int]) -> None:
        self.ports = dict(ports)
        named = ", ".join(f"{port} ({key})" for key, port in self.ports.items())
        super().__init__(f"port{'s' if len(self.ports) > 1 else ''} {named} on 127.0.0.1 "
                         f"{'are' if len(self.ports) > 1 else 'is'} in use by another process")


def _port_keys(name: str) -> tuple[str, ...]:
    """The keys in StackState.ports of the ports one service listens on."""
    return ("s3", *seaweedfs.SUBPORTS) if name == "s3" else (name,)


def _taken(ports: Mapping[str, int], names: Iterable[str], keys: Iterable[str] | None = None) -> dict[str, int]:
    """The ports of the services `names` (only those of `keys`, if given) that another process holds."""
    wanted = None if keys is None else set(keys)
    out = {}
    for name in names:
        for key in _port_keys(name):
            if wanted is None or key in wanted:
                port = taken_port(key, ports[key])
                if port is not None:
                    out[key] = port
    return out


def _service(name: str) -> Service:
    return postgres.SERVICE if name == "replica" else _BY_NAME[name]  # a replica is a postgres


def _ensure(root: Path, st: StackState, name: str, log: Log) -> None:
    """Start `name` unless our recorded process is alive; then wait until it really answers."""
    service = _BY_NAME[name]
    info = st.procs.get(name)
    t0 = time.monotonic()
    if info and process.is_ours(service.mark, info.pid):
        service.wait_ready(root, st, info, log)
        log(f"{name}: reusing pid {info.pid} on port {info.port}")
        return
    busy = _taken(st.ports, [name])
    if busy:
        raise PortsInUse(busy)
    log(f"{name}: starting on port {st.ports[name]}")
    info = service.start(root, st, log)
    with LOCK:
        st.procs[name] = info
        write_state(root, st)  # record the pid at once so `down` can stop it even if startup fails
    service.wait_ready(root, st, info, log)
    log(f"{name}: ready (pid {info.pid}, {time.monotonic() - t0:.1f}s)")


def _env_for(st: StackState) -> dict[str, str]:
    env = {"GLINT_JWT_SECRET": st.secrets.jwt_secret, "GLINT_TWO_FACTOR_KEY": st.secrets.two_factor_key}
    for name in ALL_SERVICES:
        if name in st.services:
            env.update(_BY_NAME[name].settings(st))
    return env


def _running(st: StackState) -> set[str]:
    return {n for n, i in st.procs.items() if process.is_ours(_service(n).mark, i.pid)}


def up(root: Path, *, ports: Mapping[str, int] | None = None, services: Iterable[str] = SERVICES,
       fast: bool = False, log: Log = print, defaults: bool | None = None) -> dict[str, str]:
    """Start (or reuse) the stack in `root`, wait for every service to answer, return the GLINT_* env.

    A service keeps its port while it runs. Otherwise it gets the port in `ports` (PortsInUse if
    another process holds it, before anything starts), else the one recorded in stack.json, else the
    default (defaults=True, or no `ports` given) or a free one (devstack.resolve_ports). A recorded
    or default port that another process holds is replaced by a free one, and one line says so; the
    new port is recorded, so the next up, status and down find this stack on it."""
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
    st = read_state(root)
    running = _running(st)
    recorded_ports = dict(st.ports)
    if ports:
        for n in running:
            if n in ports and int(ports[n]) != recorded_ports.get(n):
                log(f"{n}: already running on port {recorded_ports.get(n)}; ignoring requested {ports[n]}")
                ports = {k: v for k, v in ports.items() if k != n}
        if "s3" in running:
            ports = {k: v for k, v in ports.items() if k not in seaweedfs.SUBPORTS}
    asked = set(ports or ())
    st.ports = resolve_ports(ports, recorded_ports, defaults=defaults)
    # what is not running may move, but not S3 under a running Tansu: it keeps dialling the old port
    starting = [n for n in services if n not in running and not (n == "s3" and "kafka" in running)]
    taken = _taken(st.ports, starting, asked)
    if taken:
        raise PortsInUse(taken)
    before = st.ports
    st.ports = move_taken(before, [key for n in starting for key in _port_keys(n) if key not in asked])
    moved = [key for key in st.ports if st.ports[key] != before[key]]
    if moved:
        log("in use by another process, so this stack uses other ports: "
            + ", ".join(f"{key} {before[key]} -> {st.ports[key]}" for key in moved)
            + f" (recorded in {root / 'stack.json'}, settings in {root / 'stack.env'})")
    st.root = str(root)
    if running and st.fast is not None and bool(st.fast) != fast:
        log(f"note: reusing services started with fast={st.fast}")
    else:
        st.fast = fast
    st.services = sorted(set(services) | (set(st.services) & running), key=ALL_SERVICES.index)
    write_state(root, st)

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
    write_state(root, st)
    if errors:
        raise RuntimeError("stack up failed: " + "; ".join(str(e) for e in errors)) from errors[0]
    env = _env_for(st)
    write_env(root, env)
    log(f"stack up in {time.monotonic() - t0:.1f}s ({', '.join(services)}); env in {root / 'stack.env'}")
    return env


def _stop(name: str, pid: int | None) -> bool:
    service = _service(name)
    return process.stop_pid(service.mark, pid, service.stop_signal)


def down(root: Path, log: Log = print) -> None:
    """Stop every process recorded in root/stack.json; data stays."""
    root = Path(root).absolute()
    st = read_state(root)
    procs = st.procs
    if not procs:
        log("stack: nothing recorded, nothing to stop")
        return
    t0 = time.monotonic()

    def stop(name):
        info = procs.get(name)
        if info and _stop(name, info.pid):
            log(f"{name}: stopped (pid {info.pid})")

    stop("kafka")  # before s3: tansu flushes to S3
    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(stop, [n for n in procs if n != "kafka"]))
    for info in procs.values():
        info.pid = None
    seaweedfs.remove_sockets(st.ports)
    write_state(root, st)
    log(f"stack down in {time.monotonic() - t0:.1f}s")


def destroy(root: Path, log: Log = print) -> None:
    """Stop a throwaway stack (a test session's, a bench's) and delete it with its data, also the
    data kept outside `root` (PostgreSQL's under /var/tmp when the user it runs as cannot reach
    `root`, devstack/postgres.py, with its replica and its socket folder): down() keeps them."""
    root = Path(root).absolute()
    st = read_state(root)
    down(root, log)
    outside = [Path(p) for p in st.data_dirs.values() if p.startswith("/")]  # tansu's is a description
    if st.pg is not None:
        outside.append(Path(st.pg.socket_dir))
    for path in outside:
        if not path.is_relative_to(root):
            shutil.rmtree(path.parent if path.parent.name.startswith(postgres.OUTSIDE_PREFIX) else path,
                          ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


def status(root: Path) -> list[ServiceStatus]:
    """One row for every recorded service."""
    st = read_state(Path(root).absolute())
    out = []
    for name in ALL_SERVICES:
        info = st.procs.get(name)
        if info is None:
            continue
        out.append(ServiceStatus(name=name, pid=info.pid, port=info.port,
                                 alive=process.is_ours(_service(name).mark, info.pid), log=info.log))
    return out


def stop_service(root: Path, name: str, log: Log = print) -> None:
    """Stop one service (data and recorded port stay)."""
    root = Path(root).absolute()
    st = read_state(root)
    info = st.procs.get(name)
    if not info:
        raise KeyError(f"{name} is not part of the stack in {root}")
    if _stop(name, info.pid):
        log(f"{name}: stopped (pid {info.pid})")
    info.pid = None
    if name == "s3":
        seaweedfs.remove_sockets(st.ports)
    write_state(root, st)


def start_service(root: Path, name: str, log: Log = print) -> None:
    """(Re)start one service on its recorded port and wait for it to answer."""
    root = Path(root).absolute()
    st = read_state(root)
    if not st.ports:
        raise RuntimeError(f"no stack recorded in {root}; call up() first")
    if name not in ALL_SERVICES:
        raise KeyError(name)
    for k, v in DEFAULT_PORTS.items():
        st.ports.setdefault(k, v)
    _ensure(root, st, name, log)
    if name not in st.services:
        st.services.append(name)
    write_state(root, st)
    write_env(root, _env_for(st))
