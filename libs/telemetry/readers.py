"""One metric reader for the Prometheus endpoint and the OTLP export together.

The SDK keeps a copy of every instrument's aggregation per reader, and every
measurement (a counter's ``add``, a histogram's ``record``) updates each copy: with
the Prometheus reader every service has and a periodic OTLP reader beside it, the
request path pays every measurement twice. :class:`ExportingPrometheusReader` is the
Prometheus reader, which also sends what it collects to an OTLP exporter every
interval, from its own thread: one aggregation, read by both. It applies where the two
readers would aggregate alike (cumulative temporality, explicit-bucket histograms:
the OTLP exporter's defaults); :func:`shares` says when, else a service gets the two
readers as before.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.environment_variables import OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRIC_EXPORT_TIMEOUT
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, MetricsData
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation

log = logging.getLogger(__name__)

# The SDK's defaults for OTEL_METRIC_EXPORT_INTERVAL / _TIMEOUT (ms).
DEFAULT_INTERVAL_MS = 60_000.0
DEFAULT_TIMEOUT_MS = 30_000.0


def _millis(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        log.warning("%s is not a number: using %.0f ms", name, default)
        return default
    return value if value > 0 else default


def shares(exporter: MetricExporter) -> bool:
    """Whether ``exporter`` wants the data as the Prometheus reader aggregates it."""
    temporality: dict[Any, Any] = getattr(exporter, "_preferred_temporality", None) or {}
    aggregation: dict[Any, Any] = getattr(exporter, "_preferred_aggregation", None) or {}
    return all(t is AggregationTemporality.CUMULATIVE for t in temporality.values()) and all(
        isinstance(a, ExplicitBucketHistogramAggregation) and a._boundaries is None
        for a in aggregation.values()
    )


class ExportingPrometheusReader(PrometheusMetricReader):
    """The Prometheus reader (scrapes collect as before), plus a thread that exports a
    collection to ``exporter`` every ``OTEL_METRIC_EXPORT_INTERVAL`` and at shutdown."""

    def __init__(self, exporter: MetricExporter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._exporter = exporter
        self._interval_s = _millis(OTEL_METRIC_EXPORT_INTERVAL, DEFAULT_INTERVAL_MS) / 1000
        self._timeout_ms = _millis(OTEL_METRIC_EXPORT_TIMEOUT, DEFAULT_TIMEOUT_MS)
        # Which collection is for the exporter: scrapes (another thread) go to Prometheus.
        self._for_export = threading.local()
        self._export_lock = threading.Lock()  # one export at a time, as the SDK's reader
        self._stop = threading.Event()
        self._stopped = False
        self._thread = self._start()
        # A forked child has no thread of its parent's: it starts its own, as the SDK's reader.
        ref = weakref.WeakMethod(self._restart)
        os.register_at_fork(after_in_child=lambda: (method := ref()) is not None and method())

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._tick, name="OtelExportingPrometheusReader", daemon=True)
        thread.start()
        return thread

    def _restart(self) -> None:
        if not self._stopped:
            self._thread = self._start()

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        box = getattr(self._for_export, "box", None)
        if box is None:
            super()._receive_metrics(metrics_data, timeout_millis, **kwargs)
        else:
            box.append(metrics_data)

    def _export(self, timeout_millis: float) -> None:
        with self._export_lock:
            box: list[MetricsData] = []
            self._for_export.box = box
            try:
                self.collect(timeout_millis=timeout_millis)
            finally:
                self._for_export.box = None
            if not box:
                return
            # The export's own gRPC calls must not be traced or measured.
            token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
            try:
                self._exporter.export(box[0], timeout_millis=timeout_millis)
            except Exception:  # noqa: BLE001 - a failed export must not stop the next ones
                log.exception("exporting metrics failed")
            finally:
                detach(token)

    def _tick(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._export(self._timeout_ms)
            except Exception:  # noqa: BLE001 - a collection timing out: try again next time
                log.warning(
                    "metric collection failed; trying again in %.0f s", self._interval_s, exc_info=True
                )

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        self._export(timeout_millis)
        self._exporter.force_flush(timeout_millis=timeout_millis)
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self._thread.join(timeout=timeout_millis / 1000)
        try:
            self._export(timeout_millis)  # what happened since the last interval
        finally:
            self._exporter.shutdown(timeout_millis=timeout_millis)
            super().shutdown(timeout_millis, **kwargs)
