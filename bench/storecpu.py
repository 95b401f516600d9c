"""The CPU time of the stores a run uses, when they run on this machine.

A page's cost is not all the server's: PostgreSQL and Redis spend CPU on it too, on the same
cores. Each store is found by the port its URL names on a loopback host: the process listening
there (from /proc/net/tcp and the processes' sockets), and its CPU time is that process's and its
descendants' (PostgreSQL's backends), with what its exited children spent. Linux only; a store
elsewhere, or one whose processes this user may not read, has no figure.
"""

from __future__ import annotations

import os
from collections import defaultdict
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6380}
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_LISTEN = "0A"  # the TCP state in /proc/net/tcp


def local_port(url: str) -> int | None:
    """The port of a store URL on a loopback host, or None for a store elsewhere (or a bad URL)."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.split("+")[0])
    except ValueError:
        return None
    return port if parts.hostname in LOOPBACK_HOSTS else None


def listening_pid(port: int) -> int | None:
    """The process listening on a TCP port of this machine, or None (not found, or not readable)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return int(pid)
            except OSError:
                continue
    return None


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds (user and system) of a process and its descendants so far, with what their
    exited children spent; None if the process is gone."""
    own: dict[int, int] = {}
    children: defaultdict[int, list[int]] = defaultdict(list)
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        # after the name: state, ppid, ... utime (11), stime, cutime, cstime (14)
        own[int(pid)] = sum(int(x) for x in fields[11:15])
        children[int(fields[1])].append(int(pid))
    if root not in own:
        return None
    ticks, todo = 0, [root]
    while todo:
        pid = todo.pop()
        ticks += own.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return ticks / _TICK


# what a store's listening process is called (/proc/PID/comm): a proxy on the port instead (a
# connection pooler, a container's port forwarder) is not the store, and its CPU is not reported
STORE_COMMANDS = {"postgres": ("postgres",), "redis": ("redis-server", "valkey-server")}


def command_of(pid: int) -> str:
    """A process's command name, or "" when it cannot be read."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class StoreClocks:
    """The local stores of a run, by name ("postgres", "redis"), read together: `read()` gives
    each one's CPU seconds so far; a store that is not local, not found, or whose port another
    program holds, is left out."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.pids: dict[str, int] = {}
        for name, url in urls.items():
            port = local_port(url) if url else None
            pid = listening_pid(port) if port else None
            if pid is not None and command_of(pid) in STORE_COMMANDS[name]:
                self.pids[name] = pid

    def read(self) -> dict[str, float]:
        seconds = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        return {name: s for name, s in seconds.items() if s is not None}
