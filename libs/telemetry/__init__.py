"""OpenTelemetry traces and metrics for every service, and trace context across Kafka.

``setup_telemetry`` is called once by each service's ``__main__``: it installs the
SDK tracer and meter providers and serves Prometheus metrics on the service's own
port. Trace context crosses process boundaries in W3C ``traceparent`` headers: in
gRPC metadata (see :mod:`libs.rpc`) and in Kafka headers (see :mod:`libs.bus`), so
one trace spans a gRPC call and every event it causes.
"""

from __future__ import annotations

from libs.telemetry.context import context_from_headers, headers_with_context
from libs.telemetry.setup import Telemetry, setup_telemetry

__all__ = ["Telemetry", "context_from_headers", "headers_with_context", "setup_telemetry"]
