"""The stores' CPU a bench round reports: a store found by its URL's loopback port (and its
command name), and the CPU of its process tree, exited children included; the session's own
PostgreSQL and Valkey found so."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from bench.storecpu import StoreClocks, listening_pid, local_port, tree_cpu_seconds


def test_a_store_on_this_machine_is_found_by_the_port_its_url_names():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert local_port(f"postgresql://glint@127.0.0.1:{port}/glint") == port
        assert listening_pid(port) == os.getpid()
        # but this process is not PostgreSQL: a program other than the store on its port is not measured
        assert StoreClocks({"postgres": f"postgresql://glint@127.0.0.1:{port}/glint"}).pids == {}
    assert local_port("redis://localhost/0") == 6379  # the scheme's port
    # elsewhere, or not a URL: no figure, and nothing is read
    assert local_port("redis://10.1.2.3:6379/0") is None and local_port("postgresql://h:port/x") is None
    assert StoreClocks({"redis": "redis://10.1.2.3:6379/0", "postgres": ""}).pids == {}


def test_a_process_trees_cpu_counts_its_children_also_after_they_exit():
    before = tree_cpu_seconds(os.getpid())
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                    "while time.process_time() < end: pass"], check=True)
    assert tree_cpu_seconds(os.getpid()) - before >= 0.25
    assert tree_cpu_seconds(2 ** 22 + 7) is None  # no such process


def test_the_sessions_postgresql_and_valkey_are_found_by_their_urls(stack_env):
    clocks = StoreClocks({"postgres": stack_env["GLINT_DATABASE_URL"], "redis": stack_env["GLINT_REDIS_URL"]})
    assert set(clocks.pids) == {"postgres", "redis"}
    assert all(seconds > 0 for seconds in clocks.read().values())
