"""Attacks with hostile input where it enters: megabyte-long fields, hostile Kafka headers
and compressed records, times that would move clocks, and personal data in dead letters
(issue #16, "Trust").

Against real parts where the capability is theirs: the gateway in this process on real
gRPC servers (tokens on) with a Triton of its own and Kafka; ingestion on real Kafka.
Each attempt is counted with :func:`tests.security.conftest.attack`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp
from tritonclient.grpc import service_pb2

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from aifactory.ingestion.v1 import events_pb2 as ingestion_events
from libs.auth import DevAuth
from libs.usecase import load_default
from tests.gateway_support import RunningGateway, export_version, own_triton
from tests.security.attack_gateway import jwt_gateway
from tests.security.conftest import attack
from tests.security.hostile import create_topics, read_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

UC = "loan_approval"
MB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]
# A reply to a megabyte-long field: no slower than this (a normal call is a few ms; the
# bound leaves room for a shared 2-core machine), and the event loop never stalls longer.
ANSWER_S = 0.5
STALL_S = 0.25


@pytest.fixture(scope="module")
def triton() -> Iterator[Any]:
    handle = own_triton("triton-attack-input", 28641)
    export_version(handle.model_repository, load_default()[UC], 1)
    yield handle
    handle.stop()


@pytest.fixture
async def gateway(triton, kafka, new_topic, dev_auth: DevAuth) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    async for gw in jwt_gateway(triton, kafka, new_topic, dev_auth, "attack-input-salt"):
        yield gw


class LoopWatch:
    """The longest the event loop went without running a 1 ms ticker (a stall)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last)
            last = now

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def _features() -> dict[str, common_pb2.Value]:
    from tests.integration.test_gateway import as_values, features

    return as_values(features(2))


# -- megabyte-long fields ----------------------------------------------------------------------


async def test_megabyte_fields_are_answered_in_milliseconds(
    gateway: RunningGateway, dev_auth: DevAuth
) -> None:
    """Every string field of the business API and of the OIP request, a megabyte long: a
    typed answer with a short message, in milliseconds, and no stall of the event loop."""
    huge = "x" * MB
    md = dev_auth.metadata("attack-app", {UC: ["app"]})
    calls: list[tuple[str, str, Any]] = [
        ("Predict.use_case", "Predict", gw_pb.PredictRequest(use_case=huge, features=_features())),
        ("Predict.entity_id", "Predict", gw_pb.PredictRequest(use_case=UC, entity_id=huge)),
        (
            "Predict.features key",
            "Predict",
            gw_pb.PredictRequest(
                use_case=UC, features={**_features(), huge: common_pb2.Value(double_value=1)}
            ),
        ),
        (
            "Predict.features value",
            "Predict",
            gw_pb.PredictRequest(
                use_case=UC, features={**_features(), "age": common_pb2.Value(string_value=huge)}
            ),
        ),
        (
            "RecordFeedback.prediction_id",
            "RecordFeedback",
            gw_pb.RecordFeedbackRequest(
                prediction_id=huge, use_case=UC, outcome=common_pb2.Value(int64_value=1)
            ),
        ),
        (
            "RecordFeedback.use_case",
            "RecordFeedback",
            gw_pb.RecordFeedbackRequest(
                prediction_id="p1", use_case=huge, outcome=common_pb2.Value(int64_value=1)
            ),
        ),
        (
            "RecordFeedback.outcome",
            "RecordFeedback",
            gw_pb.RecordFeedbackRequest(
                prediction_id="p1", use_case=UC, outcome=common_pb2.Value(string_value=huge)
            ),
        ),
    ]
    oip_calls: list[tuple[str, bytes]] = []
    req = service_pb2.ModelInferRequest(model_name=huge)
    oip_calls.append(("ModelInfer.model_name", req.SerializeToString()))
    req = service_pb2.ModelInferRequest(model_name=UC, id=huge)
    req.inputs.add(name=huge, datatype="FP32", shape=[1, 25])
    oip_calls.append(("ModelInfer.inputs.name", req.SerializeToString()))
    req = service_pb2.ModelInferRequest(model_name=UC)
    req.inputs.add(name="INPUT", datatype=huge, shape=[1, 25])
    oip_calls.append(("ModelInfer.inputs.datatype", req.SerializeToString()))

    slowest: dict[str, float] = {}
    with LoopWatch() as watch:
        async with (
            grpc.aio.insecure_channel(
                gateway.grpc_url, options=[("grpc.max_send_message_length", 8 * MB)]
            ) as business,
            grpc.aio.insecure_channel(
                gateway.oip_url, options=[("grpc.max_send_message_length", 8 * MB)]
            ) as oip,
        ):
            stub = gw_grpc.GatewayServiceStub(business)
            infer = oip.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            todo: list[tuple[str, Any]] = [
                (what, lambda m=method, r=request: getattr(stub, m)(r, metadata=md, timeout=10))
                for what, method, request in calls
            ] + [(what, lambda b=body: infer(b, metadata=md, timeout=10)) for what, body in oip_calls]
            for what, call in todo:
                started = time.perf_counter()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call()
                took = slowest[what] = time.perf_counter() - started
                code, details = err.value.code(), err.value.details() or ""
                # A typed refusal naming what was wrong, never an internal error, a reply too
                # large for its trailer, or a slow one.
                succeeded = (
                    code
                    not in (
                        grpc.StatusCode.INVALID_ARGUMENT,
                        grpc.StatusCode.NOT_FOUND,
                        grpc.StatusCode.PERMISSION_DENIED,
                        grpc.StatusCode.UNAVAILABLE,
                    )
                    or len(details) > 4096
                    or took > ANSWER_S
                )
                attack(succeeded=succeeded)
                assert not succeeded, (what, code, len(details), f"{took * 1000:.0f} ms")
    print(
        "megabyte fields answered in (ms): "
        + ", ".join(f"{k} {v * 1000:.1f}" for k, v in slowest.items())
        + f"; longest event-loop stall {watch.worst * 1000:.1f} ms"
    )
    attack(succeeded=watch.worst > STALL_S)
    assert watch.worst <= STALL_S, f"the event loop stalled {watch.worst * 1000:.0f} ms"


def test_a_log_line_of_hostile_size_costs_milliseconds() -> None:
    """The log filter that masks secrets runs on every line, on the event loop: a long word
    (a caller's field quoted in a message) once cost it quadratic time, seconds for 10 KiB.
    Run in a child process, so a quadratic scan is killed rather than waited for."""
    shapes = ["a" * MB, "a." * (MB // 2), "a-" * (MB // 2), "password" * (MB // 8), "x://" * (MB // 4)]
    shapes.append("-----BEGIN PRIVATE KEY-----" * (MB // 27))
    script = (
        "import json, logging, sys, time\n"
        "from libs.auth.redaction import RedactingFilter\n"
        "shapes = json.loads(sys.stdin.read())\n"
        "f = RedactingFilter()\n"
        "worst = 0.0\n"
        "for s in shapes:\n"
        "    r = logging.LogRecord('t', logging.INFO, 'x.py', 1, 'refused %s', (s,), None)\n"
        "    t = time.perf_counter(); f.filter(r); worst = max(worst, time.perf_counter() - t)\n"
        "    assert len(r.getMessage()) < 8192, len(r.getMessage())\n"
        "print(worst)\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(shapes),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert proc.returncode == 0 or "AssertionError" in proc.stderr, proc.stderr[-2000:]
        worst = float(proc.stdout.strip()) if proc.returncode == 0 else float("inf")
    except subprocess.TimeoutExpired:
        worst = float("inf")
    print(f"slowest megabyte log line: {worst * 1000:.1f} ms")
    for _ in shapes:
        attack(succeeded=worst > 0.1)
    assert worst <= 0.1, f"a megabyte log line took {worst:.2f} s to filter"


# -- feedback times and the monitor's clock ------------------------------------------------------


def _stamp(at: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


async def test_feedback_times_are_clamped_and_only_for_known_predictions(
    gateway: RunningGateway, dev_auth: DevAuth
) -> None:
    md = dev_auth.metadata("attack-app", {UC: ["app"]})
    settings = gateway.settings  # type: ignore[attr-defined]
    async with grpc.aio.insecure_channel(gateway.grpc_url) as channel:
        stub = gw_grpc.GatewayServiceStub(channel)
        # Feedback for a prediction nobody made.
        try:
            await stub.RecordFeedback(
                gw_pb.RecordFeedbackRequest(
                    prediction_id=uuid.uuid4().hex, use_case=UC, outcome=common_pb2.Value(int64_value=1)
                ),
                metadata=md,
                timeout=10,
            )
            succeeded = True
        except grpc.aio.AioRpcError as exc:
            succeeded = exc.code() is not grpc.StatusCode.NOT_FOUND
        attack(succeeded=succeeded)
        assert not succeeded, "feedback for an unknown prediction was recorded"

        reply = await stub.Predict(
            gw_pb.PredictRequest(use_case=UC, features=_features()), metadata=md, timeout=10
        )
        pid = reply.prediction.prediction_id
        before = datetime.now(UTC)
        await stub.RecordFeedback(
            gw_pb.RecordFeedbackRequest(
                prediction_id=pid,
                use_case=UC,
                outcome=common_pb2.Value(int64_value=1),
                feedback_id=f"attack-{pid}",
                observed_at=_stamp(datetime(2100, 1, 1, tzinfo=UTC)),
                event_time=_stamp(datetime(2100, 1, 1, tzinfo=UTC)),
            ),
            metadata=md,
            timeout=10,
        )
    consumer = AIOKafkaConsumer(
        settings.feedback_topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        event = None
        deadline = time.monotonic() + 30
        while event is None and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    candidate = gateway_events.FeedbackRecorded.FromString(r.value)
                    if candidate.prediction_id == pid:
                        event = candidate
    finally:
        await consumer.stop()
    assert event is not None, "the feedback did not reach the topic"
    observed = event.observed_at.ToDatetime(tzinfo=UTC)
    event_time = event.event_time.ToDatetime(tzinfo=UTC)
    late = observed > datetime.now(UTC) + timedelta(minutes=1)
    attack(succeeded=late)
    assert not late, f"observed_at {observed} was taken from the app as it came"
    ahead = event_time > datetime.now(UTC) + timedelta(minutes=1)
    attack(succeeded=ahead)
    assert not ahead, f"event_time {event_time} was taken from the app as it came"
    # observed_at is also never before the prediction was made.
    assert observed >= before - timedelta(minutes=1), observed


def test_an_outcome_from_the_future_does_not_move_the_monitors_clock() -> None:
    """The monitor's join expires waiting predictions by the outcomes' event time: an outcome
    'observed' in 2100 (straight on the feedback topic) would expire every one of them."""
    from services.monitor import convert
    from services.monitor.join import Joiner

    uc = load_default()[UC]
    now = datetime.now(UTC)
    joiner = Joiner(timedelta(minutes=10))
    prediction = gateway_events.PredictionLogged(prediction_id="waiting", use_case=UC)
    prediction.model.use_case, prediction.model.version = UC, 1
    prediction.outputs["p_1"].double_value = 0.7
    prediction.outputs["p_0"].double_value = 0.3
    prediction.output.double_value = 0.7
    prediction.timestamp.FromDatetime(now)
    joiner.add_prediction(convert.prediction_of(prediction, uc, now))
    hostile = gateway_events.FeedbackRecorded(
        prediction_id="someone-else", use_case=UC, outcome=common_pb2.Value(int64_value=1)
    )
    hostile.observed_at.FromDatetime(datetime(2100, 1, 1, tzinfo=UTC))
    outcome = convert.outcome_of(hostile, uc, now)
    joiner.add_outcome(outcome)
    moved = joiner.counts.expired > 0 or outcome.observed_at > now + timedelta(minutes=1)
    attack(succeeded=moved)
    assert not moved, "an outcome from 2100 expired the predictions waiting for theirs"
    # The real outcome, a minute later, still joins.
    real = gateway_events.FeedbackRecorded(
        prediction_id="waiting", use_case=UC, outcome=common_pb2.Value(int64_value=1)
    )
    real.observed_at.FromDatetime(now + timedelta(seconds=5))
    assert joiner.add_outcome(convert.outcome_of(real, uc, now + timedelta(seconds=5))) is not None


# -- privacy -----------------------------------------------------------------------------------


def test_there_is_no_default_privacy_key(tmp_path: Path, dev_auth: DevAuth) -> None:
    """Ingestion without a key refuses to start (a built-in key is public: every hash made
    with it can be reversed by hashing candidates); the key goes to the hashing services only."""
    from opentelemetry.sdk.metrics import MeterProvider

    from aif.stack import Stack
    from libs.errors import ConfigError
    from libs.usecase import UseCases
    from services.ingestion.core import make_core
    from services.ingestion.settings import IngestionSettings

    try:
        make_core(
            IngestionSettings(data_dir=tmp_path, privacy_salt=""), MeterProvider().get_meter("t"), UseCases()
        )
        started = True
    except ConfigError:
        started = False
    attack(succeeded=started)
    assert not started, "ingestion started with no privacy key (a built-in one)"

    stack = Stack(tmp_path / "logs", auth=dev_auth, env={"AIF_GATEWAY_TRITON_CONTROL_KEY": "k"})
    for name in ("ingestion", "featurestore", "trainer", "evaluator", "registry", "gateway", "monitor"):
        env = stack.environment(name)
        leaked = ("AIF_PRIVACY_SALT" in env) != (name in ("ingestion", "gateway"))
        leaked |= ("AIF_GATEWAY_TRITON_CONTROL_KEY" in env) != (name == "gateway")
        attack(succeeded=leaked)
        assert not leaked, f"{name}'s environment: {sorted(k for k in env if k.startswith('AIF_'))}"


@pytest.mark.timeout(300)
async def test_ingestion_dead_letters_hostile_records_without_personal_data(
    kafka, dev_auth: DevAuth, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """On real Kafka: a rejected record's dead letter carries no clear personal value; a
    megabyte-long trace header and content type are shrugged off; a gzip batch that
    inflates to 4 MiB is dead-lettered as too large, not ingested."""
    from libs.runtime import start_service
    from services.ingestion.app import build
    from services.ingestion.settings import IngestionSettings
    from tests.security.test_hostile_topics import loan_record

    run = uuid.uuid4().hex[:8]
    settings = IngestionSettings(
        grpc_port=0,
        metrics_port=0,
        kafka_bootstrap=kafka.bootstrap_servers,
        auth_dir=dev_auth.directory,
        privacy_salt=dev_auth.env()["AIF_PRIVACY_SALT"],
        data_dir=tmp_path / "raw",
        consumer_group=f"attack-ingestion-{run}",
        instance_id=f"attack-{run}",
        raw_topic_pattern=f"attack.{run}.{{use_case}}.raw",
        records_topic=f"attack.records.{run}",
        dead_letter_topic=f"attack.dlq.{run}",
        quality_topic=f"attack.quality.{run}",
        topic_partitions=1,
    )
    raw = settings.raw_topic(UC)
    await create_topics(kafka.bootstrap_servers, [raw, settings.records_topic, settings.dead_letter_topic])
    import functools

    service, _ = await start_service(settings, functools.partial(build, usecases=load_default()))
    await service.server.start()
    name = f"Zelda Attackworth {run}"
    base = {**loan_record(), "applicant_name": name}
    bad = {**base, "record_id": f"bad-{run}", "age": "not a number"}
    unreadable = f'{{"applicant_name": "{name}", "age": '.encode()  # cut: not JSON
    valid = {**base, "record_id": f"ok-{run}"}
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, compression_type="gzip", max_request_size=16 * MB
    )
    await producer.start()
    try:
        await producer.send_and_wait(raw, json.dumps(bad, default=str).encode())
        await producer.send_and_wait(raw, unreadable)
        huge = b"0" * (4 * MB)
        await producer.send_and_wait(raw, b'{"pad": "' + huge + b'"}')
        await producer.send_and_wait(
            raw,
            json.dumps(valid, default=str).encode(),
            headers=[
                ("traceparent", b"0" * MB),
                ("tracestate", b"a=b," * (MB // 4)),
                ("content-type", b"x" * MB),
            ],
        )
        started = time.monotonic()
        letters = await read_until(
            kafka.bootstrap_servers, settings.dead_letter_topic, lambda ls: len(ls) >= 3, 120
        )
        records = await read_until(
            kafka.bootstrap_servers, settings.records_topic, lambda rs: len(rs) >= 1, 60
        )
        took = time.monotonic() - started
    finally:
        await producer.stop()
        await service.server.stop()
        await service.close()
    assert len(letters) >= 3, f"{len(letters)} dead letters"
    events = [ingestion_events.RecordRejected.FromString(letter.value) for letter in letters]
    for event in events:
        leaked = name.encode() in event.original or name.encode() in bytes(str(event), "utf-8")
        attack(succeeded=leaked)
        assert not leaked, f"a dead letter carries the clear name: {event.violations}"
    sizes = [e.original_size for e in events if e.violations[0].code == "too_large"]
    inflated_ok = bool(sizes) and sizes[0] > 4 * MB and all(len(e.original) <= 256 * 1024 for e in events)
    attack(succeeded=not inflated_ok)
    assert inflated_ok, [(e.violations[0].code, e.original_size, len(e.original)) for e in events]
    attack(succeeded=not records)
    assert records, "the record with megabyte-long headers was not ingested"
    print(f"ingestion: 3 hostile records dead-lettered and the valid one ingested in {took:.1f}s")
