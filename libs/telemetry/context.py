"""W3C trace context to and from Kafka headers (a list of (str, bytes) pairs)."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import context as otel_context
from opentelemetry import propagate

Headers = list[tuple[str, bytes]]


def headers_with_context(ctx: otel_context.Context | None = None) -> Headers:
    """The ``traceparent`` (and ``tracestate``) headers of ``ctx`` or of the current span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return [(k, v.encode()) for k, v in carrier.items()]


def context_from_headers(headers: Iterable[tuple[str, bytes | None]]) -> otel_context.Context:
    """The trace context carried by Kafka headers; an empty context when there is none."""
    carrier = {k: v.decode("latin-1") for k, v in headers if v is not None}
    return propagate.extract(carrier)
