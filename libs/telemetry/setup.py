"""Install OpenTelemetry providers and a Prometheus endpoint for one service process."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import prometheus_client
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from libs.errors import ConfigError

log = logging.getLogger(__name__)
_lock = threading.Lock()
# The process's Prometheus registry (one meter provider per process, see setup_telemetry).
_registry: prometheus_client.CollectorRegistry | None = None


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans to a file, one JSON object a line.

    Lets a test read the spans of several service processes without a collector.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
                        "span_id": f"{ctx.span_id:016x}" if ctx else None,
                        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                        "kind": span.kind.name,
                        "attributes": dict(span.attributes or {}),
                    },
                    default=str,
                )
            )
        with self._path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS


def _exporter(spec: str) -> SpanExporter | None:
    if spec == "none":
        return None
    if spec == "console":
        return ConsoleSpanExporter()
    if spec.startswith("jsonl:") and len(spec) > len("jsonl:"):
        return JsonLinesSpanExporter(Path(spec[len("jsonl:") :]))
    raise ConfigError(f"trace exporter {spec!r} is not one of none, console, jsonl:<path>")


@dataclass
class Telemetry:
    """What a service needs from telemetry: its tracer, its meter and its metrics port."""

    service: str
    tracer: trace.Tracer
    meter: metrics.Meter
    metrics_port: int | None
    tracer_provider: TracerProvider
    registry: prometheus_client.CollectorRegistry | None = None

    def prometheus_text(self) -> str:
        """What the Prometheus endpoint would serve now (tests read metrics this way)."""
        return prometheus_client.generate_latest(self.registry).decode() if self.registry else ""

    def shutdown(self) -> None:
        """Flush pending spans (the batch processor would lose them at exit otherwise)."""
        self.tracer_provider.force_flush()


def setup_telemetry(
    service: str,
    *,
    trace_exporter: str = "none",
    metrics_host: str = "127.0.0.1",
    metrics_port: int = 0,
) -> Telemetry:
    """Install providers for ``service`` and start its Prometheus endpoint (port 0: none).

    OpenTelemetry allows one global provider per process; a second call in the same
    process (tests running several servers in-process) reuses the first's providers.
    """
    global _registry
    with _lock:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            trace.set_tracer_provider(provider)
            exporter = _exporter(trace_exporter)
            if exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
        port: int | None = None
        if not isinstance(metrics.get_meter_provider(), MeterProvider):
            registry = _registry = prometheus_client.CollectorRegistry()
            reader = PrometheusMetricReader(registry=registry)
            # No exemplars unless asked for (OTEL_METRICS_EXEMPLAR_FILTER): the Prometheus
            # reader does not export them, and the SDK's default samples one for every
            # measurement taken inside a span, on every request's path.
            exemplars = None if os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER") else AlwaysOffExemplarFilter()
            metrics.set_meter_provider(
                MeterProvider(
                    resource=Resource.create({"service.name": service}),
                    metric_readers=[reader],
                    exemplar_filter=exemplars,
                )
            )
            if metrics_port:
                server, _ = prometheus_client.start_http_server(
                    metrics_port, addr=metrics_host, registry=registry
                )
                port = server.server_port
                log.info("metrics on http://%s:%d/metrics", metrics_host, port)
    return Telemetry(
        service=service,
        tracer=trace.get_tracer(f"aifactory.{service}"),
        meter=metrics.get_meter(f"aifactory.{service}"),
        metrics_port=port,
        tracer_provider=provider,
        registry=_registry,
    )
