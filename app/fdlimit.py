"""The open-file limit of a glint process: every websocket is a file descriptor, and the soft
limit a shell hands down (often 1,024) is far below what one process can hold; a process raises
its own soft limit to the hard limit at start (it may not go past it)."""

from __future__ import annotations

import resource


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # an unlimited hard limit the kernel caps lower: keep what we have
            return soft
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
