"""A listening socket of the test's own, to hold a port as another process would."""

from __future__ import annotations

import contextlib
import socket
from typing import Callable, ContextManager, Iterator

import pytest


@contextlib.contextmanager
def _listening(port: int) -> Iterator[socket.socket | None]:
    """Listen on 127.0.0.1:`port` until the block ends; None when another process holds it already."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # as the servers do: a closed connection's TIME_WAIT on the port does not hold it, a listener does
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            yield None  # taken anyway, which is what the test needs
            return
        sock.listen()
        yield sock
    finally:
        sock.close()


@pytest.fixture
def listening() -> Callable[[int], ContextManager[socket.socket | None]]:
    return _listening
