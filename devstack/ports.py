"""TCP ports on 127.0.0.1: the defaults of the developer's stack (or free ones where another process holds
a default), free ones for a test session."""
from __future__ import annotations

import random
import socket
from typing import Iterable, Mapping

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


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
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


def free_port_pair(offset: int = 10000) -> int:
    """A free port p such that p+offset is free as well."""
    for _ in range(500):
        p = random.randint(20000, 65535 - offset)
        if port_free(p) and port_free(p + offset):
            return p
    raise RuntimeError("no free port pair found")


ADMIN_GRPC_OFFSET = 10000  # weed's admin grpc port is its http port + this (DEFAULT_PORTS)


def resolve_ports(ports: Mapping[str, int] | None, recorded: Mapping[str, int], *,
                  defaults: bool | None = None) -> dict[str, int]:
    """explicit `ports` > ports recorded in stack.json > the defaults (defaults=True) or free ports
    (defaults=False); `defaults` is by default whether no port was given (a test's stack names some
    and never lands on the ports of a developer's `make run`).

    Free ports are all different, and differ from the admin's grpc port too: a port is free when
    it is picked, not when it is bound, so two picks (or a pick and the admin's port + 10000) could
    name the same port, and the second service to start would find it taken."""
    out: dict[str, int] = {}
    explicit = dict(ports or {})
    if defaults is None:
        defaults = ports is None
    picked = [key for key in DEFAULT_PORTS if key not in explicit and key not in recorded and not defaults]
    for key, default in DEFAULT_PORTS.items():
        if key not in picked:
            out[key] = int(explicit[key]) if key in explicit else int(recorded[key]) if key in recorded else default
    used = set(out.values())
    if "s3_admin" in out:
        used.add(out["s3_admin"] + ADMIN_GRPC_OFFSET)
    for key in picked:
        offsets = (0, ADMIN_GRPC_OFFSET) if key == "s3_admin" else (0,)
        for _ in range(500):
            port = free_port_pair(ADMIN_GRPC_OFFSET) if key == "s3_admin" else free_port()
            if not any(port + d in used for d in offsets):
                break
        else:
            raise RuntimeError(f"no free port for {key} apart from the others")
        out[key] = port
        used.update(port + d for d in offsets)
    return {key: out[key] for key in DEFAULT_PORTS}


def taken_port(key: str, port: int) -> int | None:
    """The port that `key` needs and another process holds (for s3_admin, its grpc port too), or None."""
    for p in (port, port + ADMIN_GRPC_OFFSET) if key == "s3_admin" else (port,):
        if not port_free(p):
            return p
    return None


def move_taken(ports: Mapping[str, int], movable: Iterable[str]) -> dict[str, int]:
    """`ports` with each `movable` key whose port another process holds, or another key names too,
    moved to a free port apart from all the others; the rest stay where they are."""
    movable = set(movable)
    moved: set[str] = set()
    for key in (k for k in DEFAULT_PORTS if k in movable):
        others = {p for k, v in ports.items() if k != key and k not in moved
                  for p in ((v, v + ADMIN_GRPC_OFFSET) if k == "s3_admin" else (v,))}
        own = (ports[key], ports[key] + ADMIN_GRPC_OFFSET) if key == "s3_admin" else (ports[key],)
        if taken_port(key, ports[key]) is not None or others.intersection(own):
            moved.add(key)
    if not moved:
        return dict(ports)
    return resolve_ports({k: v for k, v in ports.items() if k not in moved}, {}, defaults=False)
