"""osmem-server, an Elasticsearch-compatible in-memory server (optional: not in SERVICES), started
with ``-no-stdin-watch`` (it would exit when stdin closes otherwise)."""
from __future__ import annotations

import http.client
from pathlib import Path

from devstack import process
from devstack.process import Log, Service
from devstack.state import Proc, StackState


def _binary() -> str:
    p = process.site_module_dir("osmem_server") / "bin" / "osmem-server"
    if not p.is_file():
        raise RuntimeError(f"osmem-server binary not found at {p}")
    return str(p)


def _http_ok(port: int, path: str = "/") -> bool:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status < 500
    finally:
        c.close()


def start(root: Path, st: StackState, log: Log) -> Proc:
    port = st.ports["osmem"]
    cmd = [_binary(), "-addr", f"127.0.0.1:{port}", "-no-stdin-watch"]
    proc = process.spawn(root, "osmem", cmd, cwd=Path(root))
    return Proc(pid=proc.pid, port=port, cmd=cmd, log=str(process.log_path(root, "osmem")))


def wait_ready(root: Path, st: StackState, info: Proc, log: Log) -> None:
    process.wait_until("osmem", info.pid, lambda: _http_ok(info.port), SERVICE.wait_timeout, Path(info.log))


def settings(st: StackState) -> dict[str, str]:
    return {"GLINT_ELASTICSEARCH_URL": f"http://127.0.0.1:{st.ports['osmem']}"}


SERVICE = Service("osmem", "osmem", 30.0, start, wait_ready, settings)
