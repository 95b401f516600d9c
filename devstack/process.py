"""Child processes of the stack: spawning detached servers, running their tools, waiting for them
to answer, telling ours from a recycled pid, and stopping them. Every server runs in its own
session (``start_new_session=True``) so it outlives the CLI process that started it."""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from devstack.state import Proc, StackState

Log = Callable[[str], None]

_CHILDREN: dict[int, subprocess.Popen] = {}  # children started by this process (for reaping)


@dataclass(frozen=True)
class Service:
    """One kind of server of the stack, as the orchestration sees it."""
    name: str             # its key in stack.json, ports and `glint stack status`
    mark: str             # substring expected in /proc/PID/cmdline, so a recycled pid is never ours
    wait_timeout: float   # seconds it may take to answer after starting
    start: Callable[[Path, StackState, Log], Proc]
    wait_ready: Callable[[Path, StackState, Proc, Log], None]
    settings: Callable[[StackState], dict[str, str]]  # the GLINT_* settings it gives the app
    stop_signal: signal.Signals = signal.SIGTERM

    def ports(self, ports: Mapping[str, int]) -> list[int]:
        return [ports[self.name]]


def venv_bin(name: str) -> str | None:
    cand = Path(sys.executable).parent / name
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    return shutil.which(name)


def site_module_dir(mod: str) -> Path:
    spec = importlib.util.find_spec(mod)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {mod!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def log_path(root: Path, name: str) -> Path:
    return Path(root) / "logs" / f"{name}.log"


def _child_kwargs(env: dict | None, run_as: tuple[int, int, str] | None) -> dict:
    """The environment (ours plus `env`) and the user a child runs with."""
    kw: dict = {"env": {**os.environ, **(env or {})}}
    if run_as is not None:
        kw.update(user=run_as[0], group=run_as[1], extra_groups=[])
    return kw


def spawn(root: Path, name: str, cmd: list[str], *, env: dict | None = None, cwd: Path | None = None,
          run_as: tuple[int, int, str] | None = None) -> subprocess.Popen:
    logdir = Path(root) / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    logf = open(logdir / f"{name}.log", "ab")
    logf.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(cmd)}\n".encode())
    logf.flush()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                cwd=str(cwd) if cwd else None, start_new_session=True, close_fds=True,
                                **_child_kwargs(env, run_as))
    finally:
        logf.close()
    _CHILDREN[proc.pid] = proc
    return proc


def run(cmd: list[str], *, log_path: Path, run_as=None, cwd=None, env=None, timeout=120,
        check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=cwd,
                       timeout=timeout, **_child_kwargs(env, run_as))
    with open(log_path, "a") as f:
        f.write(f"$ {' '.join(cmd)}  -> rc={r.returncode}\n{r.stdout}{r.stderr}")
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed (rc={r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def tail(path: Path | str, n: int = 30) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no log)"


def wait_until(name: str, pid: int, check: Callable[[], bool], timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        if not proc_alive(pid):
            raise RuntimeError(f"{name} (pid {pid}) exited during startup; log {log_path}:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer within {timeout:.0f}s; log {log_path}:\n{tail(log_path)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def proc_alive(pid: int | None) -> bool:
    if not pid:
        return False
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
            return False
    else:
        try:
            wpid, _ = os.waitpid(pid, os.WNOHANG)  # reap if it is our (zombie) child
            if wpid == pid:
                return False
        except ChildProcessError:
            pass
        except OSError:
            pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
        if st[st.rindex(")") + 2:].startswith("Z"):
            return False
    except (OSError, ValueError):
        pass
    return True


def is_ours(mark: str, pid: int | None) -> bool:
    """Is pid alive and the server we started (its command line names `mark`)?"""
    if not proc_alive(pid):
        return False
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if mark in cmd:
            return True
    except OSError:
        return True  # no /proc (not linux): trust the pid
    try:
        return mark in os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False


def stop_pid(mark: str, pid: int | None, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> bool:
    """Signal, wait, then SIGKILL the whole process group. True if something was stopped."""
    if pid is None or not is_ours(mark, pid):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc_alive(pid):
            break
        time.sleep(0.05)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(100):
            if not proc_alive(pid):
                break
            time.sleep(0.05)
    # leftovers in its session (e.g. postgres backends after a SIGKILLed postmaster)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:  # reap it, so the Popen object is not collected while "still running"
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    return True
