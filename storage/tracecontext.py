"""W3C trace context as it travels with glint's own data: in an outbox row (and so in the event
on Kafka) and in a bus envelope, so that work done later or elsewhere joins the trace that caused
it. Without a tracer provider (tracing off) there is never a current span, so nothing is carried.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()


def tracing_on() -> bool:
    """Is a tracer provider set (app/tracing.py)? Without one a span records nothing, and a hot
    path skips making it: starting even a no-op span costs about 8 µs."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def current_traceparent() -> str | None:
    """The current span as a W3C traceparent, or None outside a recorded span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def context_of(traceparent: str | None) -> Context | None:
    """The parent context a traceparent names (None: a span made with it starts a new trace)."""
    return _propagator.extract({"traceparent": traceparent}) if traceparent else None
