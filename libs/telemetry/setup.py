"""Install OpenTelemetry providers and a Prometheus endpoint for one service process.

Each signal goes where the standard ``OTEL_*`` variables say (:mod:`libs.telemetry.otlp`):
OTLP to any OpenTelemetry backend, the console, or nowhere. Traces also go where
``AIF_TRACE_EXPORTER`` says (``jsonl:<path>``: a file that tests read). Metrics are always
on the service's own Prometheus endpoint, whatever else reads them.
"""

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
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from libs.errors import ConfigError
from libs.telemetry import otlp, readers
from libs.telemetry.logs import OtelLogHandler

log = logging.getLogger(__name__)
_lock = threading.Lock()
# The process's Prometheus registry and providers (one of each per process, see setup_telemetry).
_registry: prometheus_client.CollectorRegistry | None = None
_meter_provider: MeterProvider | None = None
_logger_provider: LoggerProvider | None = None

# Bucket bounds (seconds) of every duration histogram (unit "s"): from the gateway's
# sub-millisecond pass-through to a training job's minutes. The SDK's default bounds
# (0, 5, 10, 25, ... 10000) suit milliseconds and put every request in the first bucket.
DURATION_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
)  # fmt: skip

# Span batches: four times the SDK's (512 spans a batch, 2048 queued). A busy service (the
# gateway: two spans a request) then exports a batch every second or so rather than a few
# a second: fewer export calls in its process and fewer batches for the collector, which
# shares the machine. The standard OTEL_BSP_* variables still win.
BSP_BATCH = 2048
BSP_QUEUE = 8192


def _bsp_default(variable: str, value: int) -> int | None:
    """None (the SDK reads ``variable``) when it is set, else ``value``."""
    return None if os.environ.get(variable) else value


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


def _span_exporters(spec: str) -> list[tuple[SpanExporter, int | None]]:
    """Exporters named by ``spec`` (comma-separated: none, console, otlp, jsonl:<path>),
    each with its batch delay (None: the SDK's, from ``OTEL_BSP_SCHEDULE_DELAY``)."""
    out: list[tuple[SpanExporter, int | None]] = []
    for part in (p.strip() for p in spec.split(",")):
        if part in ("", "none"):
            continue
        if part == "console":
            out.append((ConsoleSpanExporter(), None))
        elif part == "otlp":
            out.append((otlp.span_exporter(), None))
        elif part.startswith("jsonl:") and len(part) > len("jsonl:"):
            # Short delay: a test reads the file soon after the spans end.
            out.append((JsonLinesSpanExporter(Path(part[len("jsonl:") :])), 200))
        else:
            raise ConfigError(f"trace exporter {part!r} is not one of none, console, otlp, jsonl:<path>")
    return out


def _span_processor(exporter: SpanExporter, delay: int | None) -> BatchSpanProcessor:
    """The SDK's batch processor, or for the OTLP/gRPC exporter the one that encodes each span
    as it ends (:class:`libs.telemetry.spanwire.EncodingSpanProcessor`)."""
    queue = _bsp_default("OTEL_BSP_MAX_QUEUE_SIZE", BSP_QUEUE)
    batch = _bsp_default("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", BSP_BATCH)
    encoder = getattr(exporter, "encoder", None)
    if encoder is None:
        return BatchSpanProcessor(
            exporter, schedule_delay_millis=delay, max_queue_size=queue, max_export_batch_size=batch
        )
    from libs.telemetry.spanwire import EncodingSpanProcessor

    return EncodingSpanProcessor(
        exporter, encoder, schedule_delay_millis=delay, max_queue_size=queue, max_export_batch_size=batch
    )


def _trace_spec(trace_exporter: str) -> str:
    """``AIF_TRACE_EXPORTER`` plus whatever ``OTEL_TRACES_EXPORTER`` (or an OTLP endpoint) asks."""
    standard = ",".join(otlp.exporters("traces"))
    return ",".join(p for p in (trace_exporter, standard) if p and p != "none") or "none"


def _metric_readers(registry: prometheus_client.CollectorRegistry) -> list[MetricReader]:
    """The Prometheus reader, first, and one for each exporter ``OTEL_METRICS_EXPORTER``
    names; the first exporter that aggregates as Prometheus does is served by the
    Prometheus reader itself (:mod:`libs.telemetry.readers`: a measurement costs one
    aggregation, not one per reader)."""
    exporters: list[MetricExporter] = [
        otlp.metric_exporter() if name == "otlp" else ConsoleMetricExporter()
        for name in otlp.exporters("metrics")
    ]
    shared = next((e for e in exporters if readers.shares(e)), None)
    prometheus: MetricReader = (
        PrometheusMetricReader(registry=registry)
        if shared is None
        else readers.ExportingPrometheusReader(shared, registry=registry)
    )
    # Interval and timeout: OTEL_METRIC_EXPORT_INTERVAL / _TIMEOUT (the SDK reads them).
    return [prometheus, *(PeriodicExportingMetricReader(e) for e in exporters if e is not shared)]


def _install_logs(resource: Resource) -> LoggerProvider | None:
    names = otlp.exporters("logs")
    if not names:
        return None
    provider = LoggerProvider(resource=resource)
    for name in names:
        exporter = otlp.log_exporter() if name == "otlp" else ConsoleLogRecordExporter()
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    set_logger_provider(provider)
    logging.getLogger().addHandler(OtelLogHandler(provider))
    return provider


@dataclass
class Telemetry:
    """What a service needs from telemetry: its tracer, its meter and its metrics port."""

    service: str
    tracer: trace.Tracer
    meter: metrics.Meter
    metrics_port: int | None
    tracer_provider: TracerProvider
    registry: prometheus_client.CollectorRegistry | None = None
    meter_provider: MeterProvider | None = None
    logger_provider: LoggerProvider | None = None

    def prometheus_text(self) -> str:
        """What the Prometheus endpoint would serve now (tests read metrics this way)."""
        return prometheus_client.generate_latest(self.registry).decode() if self.registry else ""

    def shutdown(self) -> None:
        """Flush pending spans, metrics and logs (batching processors would lose them at exit)."""
        self.tracer_provider.force_flush()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()
        if self.logger_provider is not None:
            self.logger_provider.force_flush()


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
    global _registry, _meter_provider, _logger_provider
    with _lock:
        resource = otlp.resource(service)
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
            # (default: parentbased_always_on).
            provider = TracerProvider(resource=resource)
            trace.set_tracer_provider(provider)
            for exporter, delay in _span_exporters(_trace_spec(trace_exporter)):
                provider.add_span_processor(_span_processor(exporter, delay))
        port: int | None = None
        if not isinstance(metrics.get_meter_provider(), MeterProvider):
            registry = _registry = prometheus_client.CollectorRegistry()
            # No exemplars unless asked for (OTEL_METRICS_EXEMPLAR_FILTER): the Prometheus
            # reader does not export them, and the SDK's default samples one for every
            # measurement taken inside a span, on every request's path.
            exemplars = None if os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER") else AlwaysOffExemplarFilter()
            _meter_provider = MeterProvider(
                resource=resource,
                metric_readers=_metric_readers(registry),
                exemplar_filter=exemplars,
                views=[
                    View(
                        instrument_type=Histogram,
                        instrument_unit="s",
                        aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS_S),
                    )
                ],
            )
            metrics.set_meter_provider(_meter_provider)
            if metrics_port:
                server, _ = prometheus_client.start_http_server(
                    metrics_port, addr=metrics_host, registry=registry
                )
                port = server.server_port
                log.info("metrics on http://%s:%d/metrics", metrics_host, port)
        if _logger_provider is None:
            _logger_provider = _install_logs(resource)
    return Telemetry(
        service=service,
        tracer=trace.get_tracer(f"aifactory.{service}"),
        meter=metrics.get_meter(f"aifactory.{service}"),
        metrics_port=port,
        tracer_provider=provider,
        registry=_registry,
        meter_provider=_meter_provider,
        logger_provider=_logger_provider,
    )
