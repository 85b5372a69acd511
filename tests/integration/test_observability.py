"""Telemetry into real OpenTelemetry and Prometheus backends, beside real services.

One stack (registry, ingestion, feature store, gateway, monitor as their own processes,
a Triton of the test's own) exports traces, metrics and logs over OTLP, configured only
by the standard ``OTEL_*`` variables, to a real OpenTelemetry Collector (``otelcol-aif``,
built from the Go module proxy by ``make setup``) whose file exporter writes what it got.
A real Prometheus (Debian's) scrapes every service's ``/metrics`` and Triton's with the
shipped recording and alert rules.

- a record is one connected trace: the producer's send → ingestion → the feature store's
  stream processor (faust) → its micro-batch write online;
- a gateway request is one connected trace: the business API → the feature store's
  online read → the Triton call → the prediction log, consumed by the monitor;
- every query of every shipped Grafana panel parses and returns data, and promtool
  accepts the rules and their unit tests.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, set_span_in_context

from aif.datagen import LoanStream, to_json
from aif.stack import Stack
from aifactory.common.v1 import common_pb2
from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from libs.usecase import DEFAULT_DIR, load_default
from tests.gateway_support import export_version, own_triton
from tests.otel_support import OBSERVABILITY, Collector, Prometheus, Span, trace_of, unconnected

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

# Ports above the ephemeral range, apart from the other stacks' (see aif.stack).
PORT_OFFSET = 13000
SERVICES = ("registry", "ingestion", "featurestore", "gateway", "monitor")
UC = "loan_approval"
RAW = f"aif.{UC}.raw"
OIP_PORT = 50066 + PORT_OFFSET


@dataclass
class Observed:
    stack: Stack
    collector: Collector
    triton_url: str
    triton_metrics: str
    folder: Path


@pytest.fixture(scope="module")
def observed(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("observability")
    collector = Collector(folder / "otelcol")
    assert collector.validate().returncode == 0, collector.validate().stderr
    collector.start()
    triton = own_triton("triton-observability", 28521)
    export_version(triton.model_repository, load_default()[UC], 1)
    # faust makes its data folder, but not the folders above it.
    (folder / "state" / "featurestore").mkdir(parents=True)
    stack = Stack(
        folder / "logs",
        port_offset=PORT_OFFSET,
        data_root=folder / "state",
        env={
            "AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
            **collector.env(),
            "AIF_LOG_FORMAT": "json",
            "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
            "AIF_GATEWAY_TRITON_CONTROL_KEY": triton.control_key,
            "AIF_GATEWAY_REGISTRY_TARGET": "",
            "AIF_GATEWAY_STATIC_ALIASES": f"{UC}:champion=1",
            "AIF_GATEWAY_OIP_PORT": str(OIP_PORT),
            "AIF_INGESTION_QUALITY_WINDOW_SECONDS": "1",
        },
    )
    try:
        # The use case first: the others start knowing it (the gateway loads its static champion).
        stack.start(["registry"], timeout=120)
        stack.apply_usecases([DEFAULT_DIR / f"{UC}.yaml"], reason="observability test")
        stack.start([s for s in SERVICES if s != "registry"], timeout=120)
        stack.wait_usecases([UC])
        metrics = triton.metrics_url.removeprefix("http://").split("/")[0]
        yield Observed(stack, collector, triton.grpc_url, metrics, folder)
    finally:
        stack.stop()
        collector.stop()
        triton.stop()


# -- the test's own client: a tracer of its own, exporting to the same collector ------------


def client_tracer(collector: Collector) -> tuple[TracerProvider, object]:
    provider = TracerProvider(resource=Resource.create({"service.name": "test-client"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.endpoint, insecure=True))
    )
    return provider, provider.get_tracer("test-client")


def wait_spans(
    collector: Collector, trace_id: str, want: set[tuple[str, str]], timeout: float = 60
) -> list[Span]:
    """The trace's spans once every (service, span name) in ``want`` arrived."""
    deadline = time.monotonic() + timeout
    while True:
        spans = trace_of(collector.spans(), trace_id)
        if want <= {(s.service, s.name) for s in spans} or time.monotonic() > deadline:
            return spans
        time.sleep(0.5)


def describe(spans: list[Span]) -> str:
    return "\n".join(f"  {s.service}: {s.name} ({s.kind}) {s.span_id} <- {s.parent_id or '-'}" for s in spans)


def test_one_record_is_one_connected_trace_to_the_online_write(observed: Observed) -> None:
    provider, tracer = client_tracer(observed.collector)
    example = next(iter(LoanStream(seed=int(time.time()) % 10_000, applicants=50)))
    record_id = f"otel-{uuid.uuid4().hex[:12]}"
    value = to_json({**example.record, "record_id": record_id})

    async def send() -> str:
        producer = AIOKafkaProducer(bootstrap_servers=observed.stack.env["AIF_KAFKA_BOOTSTRAP"])
        await producer.start()
        try:
            with tracer.start_as_current_span(f"send {RAW}", kind=SpanKind.PRODUCER) as span:  # type: ignore[attr-defined]
                carrier: dict[str, str] = {}
                propagate.inject(carrier, context=set_span_in_context(span))
                await producer.send_and_wait(
                    RAW,
                    value,
                    key=example.entity_id.encode(),
                    headers=[(k, v.encode()) for k, v in carrier.items()],
                )
                return f"{span.get_span_context().trace_id:032x}"
        finally:
            await producer.stop()

    trace_id = asyncio.run(send())
    provider.shutdown()

    # The record's features are online ...
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(observed.stack.target("featurestore")) as channel:
        stub = fs_grpc.FeatureStoreServiceStub(channel)
        while True:
            reply = stub.GetOnlineFeatures(
                fs_pb.GetOnlineFeaturesRequest(use_case=UC, entity_ids=[example.entity_id]),
                metadata=observed.stack.metadata(),
                timeout=10,
            )
            if reply.rows and reply.rows[0].record_id == record_id:
                break
            assert time.monotonic() < deadline, "the record's features never came online"
            time.sleep(0.3)

    # ... and its trace runs from the producer's send to the feature store's write.
    want = {
        ("test-client", f"send {RAW}"),
        ("ingestion", f"ingest {RAW}"),
        ("featurestore", "write features"),
    }
    spans = wait_spans(observed.collector, trace_id, want)
    names = {(s.service, s.name) for s in spans}
    assert want <= names, f"missing {want - names}; the trace:\n{describe(spans)}"
    assert any(s.service == "featurestore" and s.name.startswith("process ") for s in spans), describe(spans)
    root = next(s for s in spans if s.service == "test-client")
    assert not unconnected(spans, root.span_id), f"not one connected trace:\n{describe(spans)}"


def test_one_gateway_request_is_one_connected_trace_through_features_triton_and_the_log(
    observed: Observed,
) -> None:
    stack = observed.stack
    entity = _an_online_entity(stack)
    provider, tracer = client_tracer(observed.collector)
    with grpc.insecure_channel(stack.target("gateway")) as channel:
        predict = gw_grpc.GatewayServiceStub(channel).Predict
        _wait(
            lambda: predict(
                gw_pb.PredictRequest(use_case=UC, entity_id=entity), metadata=stack.metadata(), timeout=5
            )
        )
        with tracer.start_as_current_span("app predict", kind=SpanKind.CLIENT) as span:  # type: ignore[attr-defined]
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=set_span_in_context(span))
            reply = predict(
                gw_pb.PredictRequest(use_case=UC, entity_id=entity),
                metadata=(*stack.metadata(), *carrier.items()),
                timeout=10,
            )
            trace_id = f"{span.get_span_context().trace_id:032x}"
    provider.shutdown()
    assert reply.prediction.model.version == 1, reply

    want = {
        ("test-client", "app predict"),
        ("gateway", "/aifactory.gateway.v1.GatewayService/Predict"),
        ("featurestore", "/aifactory.featurestore.v1.FeatureStoreService/GetOnlineFeatures"),
        ("gateway", "triton ModelInfer"),
        ("monitor", "consume aif.predictions"),
    }
    spans = wait_spans(observed.collector, trace_id, want)
    names = {(s.service, s.name) for s in spans}
    assert want <= names, f"missing {want - names}; the trace:\n{describe(spans)}"
    root = next(s for s in spans if s.service == "test-client")
    assert not unconnected(spans, root.span_id), f"not one connected trace:\n{describe(spans)}"


def test_metrics_and_json_logs_reach_the_collector(observed: Observed) -> None:
    # Metrics leave every export interval (10 s), the lag gauge once the consumer has its
    # partitions: on a loaded machine that can take a few intervals.
    deadline = time.monotonic() + 60
    while True:
        by_service = observed.collector.metric_names()
        logs = observed.collector.log_records()
        if (
            "aif.rpc.server.requests" in by_service.get("gateway", set())
            and "aif.bus.consumer.lag" in by_service.get("monitor", set())
            and logs
        ) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {"ingestion", "featurestore", "gateway", "monitor", "registry"} <= set(by_service), sorted(
        by_service
    )
    assert all(n.startswith(("aif.", "otel.")) for names in by_service.values() for n in names), by_service
    assert "aif.bus.consumer.lag" in by_service["monitor"], sorted(by_service["monitor"])
    assert {service for service, _ in logs} >= {"gateway"}, {service for service, _ in logs}
    # stderr is JSON lines, each with the service; a line logged inside a span names its trace.
    lines = [
        json.loads(line)
        for line in (observed.stack.log_dir / "gateway.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert lines and all(line["service"] == "gateway" for line in lines)


# -- Prometheus, the rules and the dashboards ------------------------------------------------


def _panel_queries() -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for path in sorted((OBSERVABILITY / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            out.extend((path.name, panel["title"], target["expr"]) for target in panel["targets"])
    return out


def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    rules = sorted(str(p) for p in (OBSERVABILITY / "prometheus" / "rules").glob("*.yml"))
    checked = subprocess.run(
        ["promtool", "check", "rules", *rules], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = subprocess.run(
        ["promtool", "check", "config", str(OBSERVABILITY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    tested = subprocess.run(
        ["promtool", "test", "rules", str(OBSERVABILITY / "prometheus" / "tests" / "alerts_test.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_dashboard_query_parses_and_returns_data(observed: Observed) -> None:
    stack = observed.stack
    jobs = {name: f"127.0.0.1:{svc.metrics_port}" for name, svc in stack.running.items()}
    jobs["triton"] = observed.triton_metrics
    prometheus = Prometheus(observed.folder / "prometheus", jobs).start()
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(observed, stop), daemon=True)
    traffic.start()
    try:
        queries = _panel_queries()
        assert len(queries) >= 20, queries
        deadline = time.monotonic() + 90
        while True:
            failing = []
            for board, title, expr in queries:
                answer = prometheus.query(expr)
                assert answer["status"] == "success", f"{board} / {title}: {expr}: {answer.get('error')}"
                if not answer["data"]["result"]:
                    failing.append(f"{board} / {title}: {expr}")
            if not failing or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert not failing, "panels without data:\n" + "\n".join(failing)
        up = prometheus.query("up")["data"]["result"]
        assert {r["metric"]["job"] for r in up if r["value"][1] == "1"} == set(jobs), up
    finally:
        stop.set()
        traffic.join(30)
        prometheus.stop()


# -- helpers -------------------------------------------------------------------------------


def _wait(call, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            call()
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _an_online_entity(stack: Stack) -> str:
    """An entity whose features are online: sends records until one is."""
    entity = ""

    async def send() -> None:
        nonlocal entity
        producer = AIOKafkaProducer(bootstrap_servers=stack.env["AIF_KAFKA_BOOTSTRAP"])
        await producer.start()
        try:
            for e in _examples(5):
                entity = e.entity_id
                await producer.send_and_wait(
                    RAW,
                    to_json({**e.record, "record_id": f"otel-{uuid.uuid4().hex[:12]}"}),
                    key=entity.encode(),
                )
        finally:
            await producer.stop()

    asyncio.run(send())
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(stack.target("featurestore")) as channel:
        stub = fs_grpc.FeatureStoreServiceStub(channel)
        while True:
            reply = stub.GetOnlineFeatures(
                fs_pb.GetOnlineFeaturesRequest(use_case=UC, entity_ids=[entity]),
                metadata=stack.metadata(),
                timeout=10,
            )
            if reply.rows and reply.rows[0].found:
                return entity
            assert time.monotonic() < deadline, "no entity came online"
            time.sleep(0.3)


def _examples(n: int) -> list:  # type: ignore[type-arg]
    stream = iter(LoanStream(seed=int(time.time()) % 10_000, applicants=20))
    return [next(stream) for _ in range(n)]


def _traffic(observed: Observed, stop: threading.Event) -> None:
    """What the panels show: OIP and business-API calls, records (one malformed), feedback."""
    from tritonclient.grpc import service_pb2

    stack = observed.stack
    uc = load_default()[UC]
    width = len(uc.model_inputs())
    request = service_pb2.ModelInferRequest(model_name=UC)
    request.inputs.add(name="INPUT", datatype="FP32", shape=[1, width])
    request.raw_input_contents.append(np.ones((1, width), dtype=np.float32).tobytes())
    payload = request.SerializeToString()
    oip_port = OIP_PORT
    entity = _an_online_entity(stack)
    with (
        grpc.insecure_channel(f"127.0.0.1:{oip_port}") as oip,
        grpc.insecure_channel(stack.target("gateway")) as business,
    ):
        infer = oip.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        predict = gw_grpc.GatewayServiceStub(business).Predict
        feedback = gw_grpc.GatewayServiceStub(business).RecordFeedback
        malformed_sent = False
        while not stop.is_set():
            try:
                infer(payload, metadata=stack.metadata(), timeout=5)
                reply = predict(
                    gw_pb.PredictRequest(use_case=UC, entity_id=entity), metadata=stack.metadata(), timeout=5
                )
                feedback(
                    gw_pb.RecordFeedbackRequest(
                        prediction_id=reply.prediction.prediction_id,
                        use_case=UC,
                        outcome=common_pb2.Value(int64_value=1),
                    ),
                    metadata=stack.metadata(),
                    timeout=5,
                )
            except grpc.RpcError:
                pass
            if not malformed_sent:
                malformed_sent = True
                asyncio.run(_send_raw(stack, b"{not json"))
                _an_online_entity(stack)
            stop.wait(0.2)


async def _send_raw(stack: Stack, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.env["AIF_KAFKA_BOOTSTRAP"])
    await producer.start()
    try:
        await producer.send_and_wait(RAW, value, key=b"malformed")
    finally:
        await producer.stop()
