"""Tracing with OpenTelemetry, on only when `GLINT_OTLP_ENDPOINT` is set.

A process that traces exports its spans over OTLP/HTTP in batches and instruments the aiohttp
server (a span per request), asyncpg, redis, aiokafka and aiobotocore (a child span per store
call, S3 included: `S3.PutObject`, `S3.DeleteObjects`, ...; a presigned URL makes no request and
so has no span); glint's own spans cover each websocket frame, each event a consumer handles
(continuing the trace of the request that wrote the event, from the traceparent stored with it
in the outbox) and each push that arrives over the bus for a local socket. With the variable
unset nothing is instrumented and the OpenTelemetry API stays its no-op self: no span is
recorded and nothing is exported.
The standard OTEL_* variables (OTEL_TRACES_SAMPLER, OTEL_BSP_SCHEDULE_DELAY, ...) apply.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from app.config import Config

log = logging.getLogger("glint.tracing")

# the websocket request lives as long as the socket: its frames get a span each instead;
# probes and scrapes would only be noise
EXCLUDED_URLS = "/ws,/healthz,/readyz,/metrics"


def setup_tracing(config: Config, service: str) -> Callable[[], None]:
    """Start tracing for this process if configured; returns the function that flushes and stops it."""
    if not config.tracing.otlp_endpoint:
        return lambda: None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.botocore import AiobotocoreInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service, "service.namespace": "glint"}))
    exporter = OTLPSpanExporter(endpoint=config.tracing.otlp_endpoint.rstrip("/") + "/v1/traces", timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    os.environ.setdefault("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", EXCLUDED_URLS)
    # before create_app(): the aiohttp instrumentation adds its middleware to applications made after it
    AioHttpServerInstrumentor().instrument(tracer_provider=provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    AIOKafkaInstrumentor().instrument(tracer_provider=provider)
    # the package's BotocoreInstrumentor wraps only botocore's synchronous client; S3 is reached
    # through aiobotocore, whose AioBaseClient has an instrumentor of its own
    AiobotocoreInstrumentor().instrument(tracer_provider=provider)
    log.info("tracing to %s as %s", config.tracing.otlp_endpoint, service)
    return provider.shutdown
