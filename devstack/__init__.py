"""The local development and test stack of glint: real servers from PyPI wheels, each a detached
child process bound to 127.0.0.1, so it outlives the CLI process that started it. Not part of the
production app: only `glint stack` (app/cli.py), the tests and bench/ use it.

State lives in ``root``:

* ``root/stack.json``  - pids, ports, data dirs, command lines, secrets (devstack/state.py)
* ``root/stack.env``   - ``KEY=VALUE`` lines for the app (GLINT_*)
* ``root/logs/NAME.log`` - stdout/stderr of each child
* ``root/data/NAME``   - data dirs (postgres may live elsewhere, see devstack/postgres.py)

One module per server: postgres (``postgres``), valkey (``redis``), seaweedfs (``s3``), tansu
(``kafka``), osmem (``osmem``, optional); process.py and ports.py are what they share; stack.py
brings them up and down together."""
from devstack.ports import DEFAULT_PORTS, free_port
from devstack.postgres import fresh_database, start_replica
from devstack.stack import (ALL_SERVICES, SERVICES, PortsInUse, destroy, down, start_service, status, stop_service,
                            up)
from devstack.state import ServiceStatus, StackState, read_env

__all__ = ["ALL_SERVICES", "DEFAULT_PORTS", "SERVICES", "PortsInUse", "ServiceStatus", "StackState", "destroy",
           "down", "free_port", "fresh_database", "read_env", "start_replica", "start_service", "status", "stop_service", "up"]
