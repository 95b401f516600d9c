"""Process-wide Prometheus collectors.

They sit at the bottom of the layers so that every layer can count; prometheus_client's registry
is process-global by design, and these are the only objects glint makes at import time.
"""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "glint_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "glint_http_request_duration_seconds", "HTTP request latency", ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_IN_FLIGHT = Gauge("glint_http_requests_in_flight", "HTTP requests being served")
# the gauges below without a counterpart in the code are set when /metrics is scraped, from the
# truth (the socket registry, the outbox and dead-letter tables), so they never go stale
WS_CONNECTIONS = Gauge("glint_ws_connections", "Open websocket connections")
OUTBOX_BACKLOG = Gauge("glint_outbox_backlog", "Committed events not yet relayed (NaN: PostgreSQL unreachable)")
EVENTS_PUBLISHED = Counter("glint_events_published_total", "Events relayed from the outbox", ["topic"])
CONSUMER_LAG = Gauge("glint_consumer_lag", "Messages behind the end of a partition", ["topic", "partition", "group"])
EVENTS_HANDLED = Counter("glint_events_handled_total", "Events a consumer handled", ["consumer"])
HANDLER_FAILURES = Counter("glint_event_handler_failures_total", "Failed attempts to handle an event", ["consumer"])
DEAD_LETTERS = Counter("glint_dead_letters_total", "Events given up on after every retry", ["consumer"])
DEAD_LETTERS_PENDING = Gauge("glint_dead_letters_pending", "Dead letters not replayed yet, by cause", ["kind"])
DEAD_LETTER_REPLAYS = Counter("glint_dead_letter_replays_total", "Dead-letter replays", ["consumer", "outcome"])
DEPENDENCY_UP = Gauge("glint_dependency_up", "1 when the last readiness check reached the dependency", ["dependency"])
JOB_RUNS = Counter("glint_job_runs_total", "Periodic job runs", ["job", "outcome"])
JOB_DURATION = Histogram("glint_job_duration_seconds", "Periodic job duration", ["job"])
WS_FRAMES = Counter("glint_ws_frames_total", "Websocket frames received from and written to clients", ["direction"])
WS_FRAMES_IN = WS_FRAMES.labels("in")
WS_FRAMES_OUT = WS_FRAMES.labels("out")
WS_CLOSED_SLOW = Counter("glint_ws_slow_closes_total", "Sockets closed because the client could not keep up")
WS_SWEEP_SECONDS = Gauge("glint_ws_sweep_seconds", "The last heartbeat sweep over this process's sockets"
                         " (pings, timeouts, token and session checks), by clock: wall or cpu", ["clock"])
WS_SWEEP_SOCKETS = Gauge("glint_ws_sweep_sockets", "Sockets the last heartbeat sweep went over")
MESSAGES_SENT = Counter("glint_messages_sent_total", "Direct messages written")
EVENT_LAG = Histogram(
    "glint_event_lag_seconds", "From an event's commit to a consumer having handled it", ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
STORE_ERRORS = Counter("glint_store_errors_total", "Failed calls to a store, by store", ["store"])

_STORES = {"asyncpg": "postgres", "redis": "redis", "botocore": "s3", "aiobotocore": "s3",
           "aiokafka": "kafka", "kafka": "kafka", "elasticsearch": "search", "elastic_transport": "search"}


def store_of(exc: BaseException) -> str | None:
    """The store an exception came from, by the package that raised it; None if not a store's."""
    for cls in type(exc).__mro__:
        store = _STORES.get(cls.__module__.split(".", 1)[0])
        if store is not None:
            return store
    return None


def count_store_error(exc: BaseException, default: str | None = None) -> None:
    """Count a failed store call (a plain OSError is counted under `default`, when given)."""
    store = store_of(exc) or (default if isinstance(exc, OSError) else None)
    if store is not None:
        STORE_ERRORS.labels(store).inc()
