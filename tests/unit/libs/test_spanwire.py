"""The fast OTLP span encoding gives the SDK encoder's request, and the one metric reader
serves Prometheus and an exporter alike."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState
from prometheus_client import CollectorRegistry, generate_latest

from libs.telemetry import spanwire
from libs.telemetry.readers import ExportingPrometheusReader, shares
from libs.telemetry.spanwire import SpanEncoder


class _Kept(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _spans() -> list[ReadableSpan]:
    kept = _Kept()
    resources = [Resource.create({"service.name": s, "service.namespace": "aifactory"}) for s in ("a", "b")]
    for resource in resources:
        provider = TracerProvider(resource=resource, span_limits=SpanLimits(max_attributes=5))
        provider.add_span_processor(SimpleSpanProcessor(kept))
        for scope, traced_before in (
            ("aifactory.gateway", True),
            ("aifactory.other", True),
            ("local", False),
        ):
            tracer = provider.get_tracer(scope, "1.0", schema_url="https://example/schema")
            remote = SpanContext(
                0x0AF7651916CD43DD8448EB211C80319C,
                0xB7AD6B7169203331,
                is_remote=True,
                trace_flags=TraceFlags(1),
                trace_state=TraceState([("vendor", "v1"), ("other", "x")]),
            )
            with tracer.start_as_current_span(
                "/svc/Method",
                # A caller's trace (remote parent, trace state) or a trace of its own.
                context=trace.set_span_in_context(NonRecordingSpan(remote)) if traced_before else None,
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "n": 3, "ok": True, "ratio": 0.5, "tags": ("x", "y")},
            ) as server:
                with tracer.start_as_current_span(
                    "triton ModelInfer", kind=SpanKind.CLIENT, attributes={"rpc.system": "grpc", "n": 2**40}
                ):
                    pass
                with tracer.start_as_current_span("failed", kind=SpanKind.INTERNAL) as failed:
                    failed.set_status(Status(StatusCode.ERROR, "deadline exceeded"))
                with tracer.start_as_current_span(
                    "many", kind=SpanKind.PRODUCER, attributes={f"k{i}": i for i in range(8)}
                ):
                    pass  # over the attribute limit: some dropped
                with tracer.start_as_current_span(
                    "linked", kind=SpanKind.CONSUMER, links=[Link(server.get_span_context(), {"l": 1})]
                ) as linked:
                    linked.add_event("retry", {"attempt": 2})
                server.set_status(Status(StatusCode.OK))
        provider.shutdown()
    return kept.spans


@pytest.fixture(params=["compiled", "python"], autouse=True)
def encoding(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here with the compiled encoder (libs/telemetry/_spanwire.c, built by
    ``make setup``) and without it (the Python that a service falls back to)."""
    if request.param == "compiled":
        assert spanwire._span_field is not None, "libs/telemetry/_spanwire.c is not compiled: run make setup"
    else:
        monkeypatch.setattr(spanwire, "_span_field", None)
    return str(request.param)


def test_the_request_equals_the_sdk_encoders() -> None:
    spans = _spans()
    assert len(spans) == 30
    encoder = SpanEncoder()
    for _ in range(2):  # the second time from what the encoder remembered
        assert encoder.request(spans) == encode_spans(spans)
    assert encoder.request(spans[:1]) == encode_spans(spans[:1])
    assert encoder.request([]) == encode_spans([])


@pytest.mark.parametrize("encoding", ["compiled"], indirect=True)
def test_the_compiled_encoder_takes_every_remembered_plain_span() -> None:
    spans = _spans()
    encoder = SpanEncoder()
    assert spanwire._span_field is not None
    assert all(spanwire._span_field(s, encoder._tails) is None for s in spans)  # nothing remembered yet
    encoder.encode(spans)
    plain = [
        s
        for s in spans
        if not (s.events or s.links or s.context.trace_state)
        and not any(isinstance(v, tuple) for v in (s.attributes or {}).values())
    ]
    assert len(plain) == 6  # of the local trace: all but the linked one and the one with a sequence
    for span in spans:
        fast = spanwire._span_field(span, encoder._tails)
        if span in plain:
            assert fast == encoder._encode_span(span)
        else:  # events, links, trace state or a sequence value: left to the Python encoder
            assert fast is None
    assert spanwire._span_field(object(), encoder._tails) is None  # not a span it knows: left alone
    with pytest.raises(TypeError, match="tails"):
        spanwire._span_field(spans[0], [])  # type: ignore[arg-type]


def test_equal_values_of_other_types_keep_their_own_encoding() -> None:
    # True == 1 == 1.0 (and (True, False) == (1, 0)): whatever the encoder remembers of one
    # span must not be reused for a span whose values only compare equal.
    kept = _Kept()
    provider = TracerProvider(resource=Resource.create({"service.name": "a"}))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("aifactory.gateway")
    for value in (True, 1, 1.0, (True, False), (1, 0), (1.0, 0.0), "1", 1, True):
        with tracer.start_as_current_span("same", attributes={"flag": value, "fixed": 1}):
            pass
    provider.shutdown()
    encoder = SpanEncoder()
    for span in kept.spans:
        assert encoder.request([span]) == encode_spans([span])
    assert encoder.request(kept.spans) == encode_spans(kept.spans)


def test_the_otlp_exporter_sends_that_request(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from libs.telemetry import otlp

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    exporter = otlp.span_exporter()
    spans = _spans()
    try:
        sent = exporter._translate_data(spans)
        assert isinstance(sent, bytes)
        assert ExportTraceServiceRequest.FromString(sent) == encode_spans(spans)
    finally:
        exporter.shutdown()


class _Wire(SpanExporter):
    """Keeps each batch as ``encoder`` puts it on the wire."""

    def __init__(self, encoder: SpanEncoder, sent: list[bytes]) -> None:
        self.encoder, self.sent = encoder, sent

    def export(self, batch: Sequence[ReadableSpan]) -> SpanExportResult:
        self.sent.append(self.encoder.encode(batch))
        return SpanExportResult.SUCCESS


def test_spans_encoded_as_they_end_make_the_same_request() -> None:
    from libs.telemetry.spanwire import EncodingSpanProcessor

    spans = _spans()
    encoder = SpanEncoder()
    sent: list[bytes] = []

    processor = EncodingSpanProcessor(_Wire(encoder, sent), encoder, max_export_batch_size=7)
    for span in spans:
        processor.on_end(span)
    processor.force_flush()
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    requests = [ExportTraceServiceRequest.FromString(b) for b in sent]
    # Batches of at most 7, in order: each equals the SDK's request for the same spans.
    assert sum(len(ss.spans) for r in requests for rs in r.resource_spans for ss in rs.scope_spans) == 30
    done = 0
    for request in requests:
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        assert request == encode_spans(spans[done : done + n])
        done += n
    processor.shutdown()


def test_live_spans_ending_through_the_processor_make_the_sdks_request() -> None:
    # The path a service takes: the processor gets the SDK's own Span objects (not the
    # copies an exporter sees), the same kind of span again and again, now and then with an
    # event or a remote parent: each must come out as the SDK encodes it.
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from libs.telemetry.spanwire import EncodingSpanProcessor

    encoder = SpanEncoder()
    sent: list[bytes] = []

    kept = _Kept()
    provider = TracerProvider(resource=Resource.create({"service.name": "gateway"}))
    provider.add_span_processor(
        EncodingSpanProcessor(_Wire(encoder, sent), encoder, max_export_batch_size=1_000)
    )
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("aifactory.gateway")
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1))
    for i in range(12):
        context = trace.set_span_in_context(NonRecordingSpan(remote)) if i % 4 == 3 else None
        with tracer.start_as_current_span(
            "Predict", context=context, kind=SpanKind.SERVER, attributes={"m": "P"}
        ):
            with tracer.start_as_current_span(
                "triton ModelInfer", kind=SpanKind.CLIENT, attributes={"v": 1}
            ) as call:
                if i % 5 == 4:
                    call.add_event("retry")
    provider.shutdown()
    assert len(kept.spans) == 24
    (request,) = (ExportTraceServiceRequest.FromString(b) for b in sent)
    assert request == encode_spans(kept.spans)


def test_the_otlp_grpc_exporter_gets_the_encoding_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    from libs.telemetry import otlp, setup
    from libs.telemetry.spanwire import EncodingSpanProcessor

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    exporter = otlp.span_exporter()
    encoding = setup._span_processor(exporter, None)
    plain = setup._span_processor(ConsoleSpanExporter(), None)
    try:
        assert type(encoding) is EncodingSpanProcessor and encoding._encoder is exporter.encoder
        assert type(plain) is BatchSpanProcessor
    finally:
        encoding.shutdown()
        plain.shutdown()


class _Exporter(MetricExporter):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.exported: list[MetricsData] = []
        self.stopped = False

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self.stopped = True


def _points(data: MetricsData, name: str) -> list[float]:
    return [
        p.value  # type: ignore[union-attr]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def test_one_reader_serves_prometheus_and_the_exporter() -> None:
    exporter = _Exporter()
    registry = CollectorRegistry()
    reader = ExportingPrometheusReader(exporter, registry=registry)
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("t").create_counter("aif.calls")
    counter.add(2)
    scraped = [
        line for line in generate_latest(registry).decode().splitlines() if line.startswith("aif_calls")
    ]
    assert len(scraped) == 1 and scraped[0].endswith(" 2.0")
    counter.add(1)
    provider.force_flush()
    assert exporter.exported and _points(exporter.exported[-1], "aif.calls") == [3]
    counter.add(4)
    provider.shutdown()  # the last interval's measurements are exported too
    assert _points(exporter.exported[-1], "aif.calls") == [7] and exporter.stopped


def test_an_exporter_that_aggregates_otherwise_gets_its_own_reader() -> None:
    assert shares(_Exporter())
    from opentelemetry.sdk.metrics import Counter, Histogram

    assert not shares(_Exporter(preferred_temporality={Counter: AggregationTemporality.DELTA}))
    assert not shares(_Exporter(preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()}))


def test_the_otlp_exporter_shares_unless_told_to_aggregate_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    assert shares(OTLPMetricExporter(endpoint="http://127.0.0.1:4317", insecure=True))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    assert not shares(OTLPMetricExporter(endpoint="http://127.0.0.1:4317", insecure=True))
