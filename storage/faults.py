"""Which failures mean "a store is away" rather than "glint has a bug" or "this input is bad".

One classification for every layer: REST and the websocket answer it as `unavailable` with a
retry hint, the consumers' dead letters it caused are replayed automatically once the store is
back, and the bus publisher retries on it. Connection refusals, resets and timeouts of
PostgreSQL, Redis, S3, Elasticsearch and Kafka all count; a constraint violation, a bad payload
or a programming error does not.
"""

from __future__ import annotations

import logging
import time

import asyncpg
import redis.exceptions

try:  # the optional clients: a process without them simply never raises their errors
    import botocore.exceptions as _botocore
except ImportError:  # pragma: no cover
    _botocore = None
try:
    import elastic_transport as _elastic
except ImportError:  # pragma: no cover
    _elastic = None
try:
    import aiokafka.errors as _kafka
except ImportError:  # pragma: no cover
    _kafka = None

RETRY_AFTER_SECONDS = 1  # what a client is told to wait before retrying

_BY_DEPENDENCY: list[tuple[str, tuple[type[BaseException], ...]]] = [
    # a cluster that lost a primary (or its slot map) answers CLUSTERDOWN or cannot place a slot
    ("redis", (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               redis.exceptions.ClusterDownError, redis.exceptions.SlotNotCoveredError,
               redis.exceptions.TryAgainError)),
    ("postgres", (asyncpg.exceptions.PostgresConnectionError, asyncpg.exceptions.CannotConnectNowError,
                  asyncpg.exceptions.TooManyConnectionsError, asyncpg.exceptions.AdminShutdownError,
                  asyncpg.exceptions.CrashShutdownError,
                  # a pooled connection left mid-operation when its server went away: asyncpg
                  # then refuses the next statement on it (MagicStack/asyncpg#1069), sending nothing
                  asyncpg.exceptions.InternalClientError)),
]
if _botocore is not None:
    _BY_DEPENDENCY.append(("s3", (_botocore.ConnectionError, _botocore.ReadTimeoutError,
                                  _botocore.ConnectionClosedError)))
if _elastic is not None:
    _BY_DEPENDENCY.append(("elasticsearch", (_elastic.ConnectionError, _elastic.ConnectionTimeout)))
if _kafka is not None:
    _BY_DEPENDENCY.append(("kafka", (_kafka.KafkaConnectionError, _kafka.KafkaTimeoutError,
                                     _kafka.NodeNotReadyError, _kafka.RequestTimedOutError)))
# last: a refused or reset socket and a timeout, from whichever client raised it
_BY_DEPENDENCY.append(("network", (OSError, TimeoutError)))

UNAVAILABLE: tuple[type[BaseException], ...] = tuple(t for _, types in _BY_DEPENDENCY for t in types)


def dependency_of(exc: BaseException) -> str | None:
    """The store a failure says is away ("redis", "postgres", "s3", "elasticsearch", "kafka", or
    "network" when only the socket tells), or None when it is not an outage. The chain of causes
    is followed, so a wrapped connection error still counts."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        for name, types in _BY_DEPENDENCY:
            if isinstance(current, types):
                return name
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Is this failure a store being away or overloaded (worth retrying later)?"""
    return dependency_of(exc) is not None


class OutageLog:
    """Logs store outages one line per interval (with how many were folded in), not one
    traceback per failed request or frame."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last = -1e9
        self._folded = 0

    def note(self, what: str, exc: BaseException) -> None:
        """Record one failure of `what` on an unavailable store."""
        now = time.monotonic()
        if now - self._last < self.interval:
            self._folded += 1
            return
        folded, self._folded, self._last = self._folded, 0, now
        self.logger.warning("%s: %s unavailable: %r%s", what, dependency_of(exc) or "a store", exc,
                            f" (and {folded} more like it)" if folded else "")


_STORES = {"asyncpg": "postgres", "redis": "redis", "botocore": "s3", "aiobotocore": "s3",
           "aiokafka": "kafka", "kafka": "kafka", "elasticsearch": "search", "elastic_transport": "search"}


def store_of(exc: BaseException) -> str | None:
    """The store an exception came from, by the package that raised it; None if not a store's."""
    for cls in type(exc).__mro__:
        store = _STORES.get(cls.__module__.split(".", 1)[0])
        if store is not None:
            return store
    return None
