"""Which exporters each signal gets, from the standard ``OTEL_*`` variables.

Read here, once per process, so that every service speaks to any OpenTelemetry backend
the same way (an OpenTelemetry Collector, Jaeger, Tempo, a vendor's OTLP endpoint):

- ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``, ``OTEL_LOGS_EXPORTER``: a
  comma-separated list of ``otlp``, ``console``, ``none`` (metrics also ``prometheus``,
  which is always on: each service's ``/metrics`` stays). Unset: ``otlp`` when an OTLP
  endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or the signal's own), else ``none``
  (the SDK's own default, ``otlp``, would make every local run retry a collector that is
  not there).
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or ``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``): ``grpc``
  (default, port 4317) or ``http/protobuf`` (port 4318).
- Endpoint, headers, timeout, compression, certificates: read by the OTLP exporters
  themselves (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``, ...).
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: read by the tracer provider;
  ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``: by :func:`resource`;
  ``OTEL_BSP_*``, ``OTEL_BLRP_*``, ``OTEL_METRIC_EXPORT_INTERVAL``: by the SDK's processors.

The exporter packages are imported only when a signal uses them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, cast

from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from libs.errors import ConfigError

Signal = Literal["traces", "metrics", "logs"]
# Exporter names each signal accepts ("prometheus": the per-service endpoint, always on).
KNOWN: dict[Signal, frozenset[str]] = {
    "traces": frozenset({"otlp", "console", "none"}),
    "metrics": frozenset({"otlp", "console", "prometheus", "none"}),
    "logs": frozenset({"otlp", "console", "none"}),
}
PROTOCOLS = ("grpc", "http/protobuf")
NAMESPACE = "aifactory"


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def exporters(signal: Signal, environ: Mapping[str, str] | None = None) -> list[str]:
    """The exporters ``OTEL_<SIGNAL>_EXPORTER`` names (see the module's docstring)."""
    env = _env(environ)
    var = f"OTEL_{signal.upper()}_EXPORTER"
    raw = env.get(var, "").strip()
    if not raw:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = sorted(set(names) - KNOWN[signal])
    if unknown:
        raise ConfigError(
            f"{var}: unknown exporter(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN[signal]))}"
        )
    return [n for n in names if n not in ("none", "prometheus")]


def protocol(signal: Signal, environ: Mapping[str, str] | None = None) -> str:
    env = _env(environ)
    var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    value = env.get(var) or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    if value not in PROTOCOLS:
        raise ConfigError(
            f"{var} / OTEL_EXPORTER_OTLP_PROTOCOL: {value!r} is not one of {', '.join(PROTOCOLS)}"
        )
    return value


def resource(service: str) -> Resource:
    """``service.name`` (``OTEL_SERVICE_NAME`` wins when set) and ``service.namespace``
    ("aifactory"), under whatever ``OTEL_RESOURCE_ATTRIBUTES`` says."""
    detected = OTELResourceDetector().detect().attributes
    return Resource.create({"service.name": service, "service.namespace": NAMESPACE, **detected})


def span_exporter(environ: Mapping[str, str] | None = None) -> Any:
    if protocol("traces", environ) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        from libs.telemetry.spanwire import SpanEncoder

        class BytesStub:
            """``TraceServiceStub`` whose ``Export`` takes the request already serialised."""

            def __init__(self, channel: Any) -> None:
                self.Export = channel.unary_unary(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                    response_deserializer=ExportTraceServiceResponse.FromString,
                )

        class FastSpanExporter(OTLPSpanExporter):
            """The SDK's gRPC exporter sending :mod:`libs.telemetry.spanwire`'s encoding as it
            is: the same request for a fraction of the encoder's time in the exporter's
            thread, which holds the GIL the service's event loop needs."""

            def __init__(self) -> None:
                super().__init__()
                # Also the processor's (libs.telemetry.spanwire.EncodingSpanProcessor).
                self.encoder = self._encoder = SpanEncoder()
                # The exporter builds a new stub from ``_stub`` when it reconnects.
                self._stub = BytesStub
                self._client = cast(Any, BytesStub(self._channel))

            def _translate_data(self, data: Any) -> Any:
                return self._encoder.encode(data)

        return FastSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    return HttpSpanExporter()


def metric_exporter(environ: Mapping[str, str] | None = None) -> Any:
    if protocol("metrics", environ) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter()


def log_exporter(environ: Mapping[str, str] | None = None) -> Any:
    if protocol("logs", environ) == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter

    return HttpLogExporter()
