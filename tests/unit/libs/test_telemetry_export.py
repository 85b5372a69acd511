"""Telemetry configured by the standard OTEL_* variables; log lines carrying the trace."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from libs.errors import ConfigError
from libs.telemetry import JsonFormatter, otlp
from libs.telemetry.logs import OtelLogHandler
from libs.telemetry.setup import JsonLinesSpanExporter, _span_exporters, _trace_spec


def test_exporters_follow_the_standard_variables() -> None:
    assert otlp.exporters("traces", {}) == []
    # An endpoint alone turns OTLP on (the SDK's default exporter), for every signal.
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    assert otlp.exporters("traces", env) == otlp.exporters("logs", env) == ["otlp"]
    assert otlp.exporters("metrics", {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4317"}) == ["otlp"]
    assert otlp.exporters("metrics", {**env, "OTEL_METRICS_EXPORTER": "prometheus"}) == []
    assert otlp.exporters("traces", {**env, "OTEL_TRACES_EXPORTER": "none"}) == []
    assert otlp.exporters("traces", {"OTEL_TRACES_EXPORTER": "otlp, console"}) == ["otlp", "console"]
    with pytest.raises(ConfigError, match="OTEL_LOGS_EXPORTER.*zipkin"):
        otlp.exporters("logs", {"OTEL_LOGS_EXPORTER": "zipkin"})


def test_protocol_is_grpc_unless_http_is_asked_for() -> None:
    assert otlp.protocol("traces", {}) == "grpc"
    assert otlp.protocol("traces", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}) == "http/protobuf"
    signal_wins = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc"}
    assert otlp.protocol("logs", signal_wins) == "grpc"
    with pytest.raises(ConfigError, match="http/json"):
        otlp.protocol("metrics", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    http = otlp.span_exporter({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"})
    assert type(http).__module__.startswith("opentelemetry.exporter.otlp.proto.http")


def test_resource_names_the_service_under_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,service.namespace=bank"
    )
    attrs = otlp.resource("gateway").attributes
    assert attrs["service.name"] == "gateway"
    assert attrs["deployment.environment.name"] == "staging"
    assert attrs["service.namespace"] == "bank"  # the operator's word wins over the default
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu")
    assert otlp.resource("gateway").attributes["service.name"] == "gateway-eu"


def test_trace_exporters_combine_the_setting_and_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    spec = _trace_spec(f"jsonl:{tmp_path / 'spans.jsonl'}")
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporters = [e for e, _ in _span_exporters(spec)]
    assert len(exporters) == 2 and isinstance(exporters[1], OTLPSpanExporter)
    assert isinstance(_span_exporters(spec)[0][0], JsonLinesSpanExporter)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    assert _trace_spec("none") == "none"
    with pytest.raises(ConfigError, match="jaeger"):
        _span_exporters("jaeger")


def _span():  # type: ignore[no-untyped-def]
    return TracerProvider().get_tracer("test").start_as_current_span("work")


def test_json_log_lines_carry_the_current_trace() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("ingestion"))
    logger = logging.getLogger("test.json.logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside %d", 1)
        with _span() as span:
            logger.warning("inside", extra={"use_case": "loan"})
            ctx = span.get_span_context()
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    outside, inside, failed = (json.loads(line) for line in out.getvalue().splitlines())
    assert outside["message"] == "outside 1" and "trace_id" not in outside
    assert inside["service"] == "ingestion" and inside["level"] == "WARNING" and inside["use_case"] == "loan"
    assert inside["trace_id"] == f"{ctx.trace_id:032x}" and inside["span_id"] == f"{ctx.span_id:016x}"
    assert "ValueError: boom" in failed["exception"]


def test_log_records_reach_opentelemetry_with_their_trace() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("test.otel.logs")
    logger.setLevel(logging.INFO)
    handler = OtelLogHandler(provider)
    logger.addHandler(handler)
    try:
        with _span() as span:
            logger.info("record %s", "r-1")
        logging.getLogger("opentelemetry.exporter.test").addHandler(handler)
        logging.getLogger("opentelemetry.exporter.test").error("export failed")  # not fed back
    finally:
        logger.removeHandler(handler)
        logging.getLogger("opentelemetry.exporter.test").removeHandler(handler)
    (record,) = [r.log_record for r in exporter.get_finished_logs()]
    assert record.body == "record r-1" and record.severity_text == "INFO"
    assert record.trace_id == span.get_span_context().trace_id
    assert trace.format_span_id(record.span_id) == f"{span.get_span_context().span_id:016x}"
