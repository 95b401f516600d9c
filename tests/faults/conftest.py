"""What the fault tests share: freezing and restarting the session's own servers (every fault is
undone, and the server answers again, before the test ends, so the tests after it see a healthy
stack), and a Config with retries small enough that a fault outlasts them in seconds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import devstack
from app.config import Config
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[2]


def service_pid(stack_root: Path, name: str) -> int:
    """The pid of one of the session stack's servers."""
    for row in devstack.status(stack_root):
        if row.name == name and row.alive:
            return int(row.pid)
    raise AssertionError(f"{name} is not running in {stack_root}")


@contextlib.contextmanager
def frozen(stack_root: Path, name: str) -> Iterator[None]:
    """The server stopped with SIGSTOP (it accepts connections and answers nothing) until the
    block ends: a stall, as a server swapping or paused by its host looks to its clients."""
    pid = service_pid(stack_root, name)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def stopped(stack_root: Path, name: str) -> Iterator[None]:
    """The server shut down until the block ends, then started again on its port and waited for."""
    devstack.stop_service(stack_root, name, log=lambda *a: None)
    try:
        yield
    finally:
        devstack.start_service(stack_root, name, log=lambda *a: None)


def fault_config(stack_env: dict[str, str], database_url: str, **overrides: object) -> Config:
    """A Config whose retries a fault of a few seconds outlasts: Redis gives up after 0.5 s, a
    consumer after two tries, and a dead letter an outage caused is replayed within a second or
    two of the store coming back."""
    settings: dict[str, object] = dict(
        database_url=database_url, redis_timeout_seconds=0.5, consumer_max_attempts=2,
        consumer_retry_base_seconds=0.05, dead_letter_replay_base_seconds=0.5,
        dead_letter_replay_max_seconds=1.0, dead_letter_poll_seconds=0.2, outbox_poll_seconds=0.2,
    )
    settings.update(overrides)
    return make_config(stack_env, **settings)


async def glint_cli(database_url: str, stack_env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run a `glint` command against the test's database (the test's loop keeps running, so its
    app can carry out what the command asks); (exit code, stdout + stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLINT_")}
    env.update({k: v for k, v in stack_env.items() if k.startswith("GLINT_")})
    env.update(GLINT_DATABASE_URL=database_url, GLINT_STACK_DIR="/nonexistent-glint-stack")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "app.cli", *args, cwd=ROOT, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode()
