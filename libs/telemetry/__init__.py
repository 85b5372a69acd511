"""OpenTelemetry traces, metrics and logs for every service, and trace context across Kafka.

``setup_telemetry`` is called once by each service's ``__main__``: it installs the
SDK tracer, meter and (when asked) logger providers, exports each signal where the
standard ``OTEL_*`` variables say (OTLP to any OpenTelemetry backend: see
:mod:`libs.telemetry.otlp`), and serves Prometheus metrics on the service's own port.
Trace context crosses process boundaries in W3C ``traceparent`` headers: in gRPC
metadata (see :mod:`libs.rpc`) and in Kafka headers (see :mod:`libs.bus`), so one trace
spans a gRPC call and every event it causes. :mod:`libs.telemetry.logs` writes log lines
as JSON carrying the current trace and span ids.
"""

from __future__ import annotations

from libs.telemetry.context import context_from_headers, headers_with_context
from libs.telemetry.logs import JsonFormatter, trace_ids
from libs.telemetry.setup import Telemetry, setup_telemetry

__all__ = [
    "JsonFormatter",
    "Telemetry",
    "context_from_headers",
    "headers_with_context",
    "setup_telemetry",
    "trace_ids",
]
