"""The monitor on real parts: the real broker, the real registry service (training references,
alias changes in, rollback requests out), SQLite, JWT-authenticated gRPC, both services
in-process with per-test topics.

- A LoanStream whose concept drifts at record 2000, served by a fixed model (Agrawal's
  first rule, 5% wrong): no alarm on the stationary prefix, one ``DriftDetected`` soon
  after the onset with its evidence, the reports readable over gRPC, a bad event
  dead-lettered with the reason, and a restarted monitor that does not alarm again.
- After a promotion, a new champion clearly worse than the previous one makes the
  monitor request a rollback, and the registry rolls back.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from aiokafka import AIOKafkaConsumer
from google.protobuf.message import Message
from pydantic import SecretStr

from aif import infra
from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.monitor.v1 import monitor_service_pb2 as pb
from aifactory.monitor.v1 import monitor_service_pb2_grpc as pb_grpc
from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.registry.v1 import registry_service_pb2 as registry_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as registry_grpc
from libs.auth import REVOKED_FILE, DevAuth, JwtAuthenticator, RevocationList, TokenVerifier, load_public_key
from libs.bus import EventPublisher, Outgoing
from libs.errors import Unavailable
from libs.lifecycle.owners import GrpcMonitor
from libs.rpc import ServerSecurity, insecure_channel
from libs.runtime import Service
from libs.telemetry import setup_telemetry
from libs.usecase import DEFAULT_DIR, UseCase, load_default
from services.monitor import convert
from services.monitor.app import build as build_monitor
from services.monitor.domain import VersionKey
from services.monitor.references import RegistryReferences
from services.monitor.settings import MonitorSettings
from services.monitor.store import MonitorStore
from services.registry.app import build as build_registry
from services.registry.settings import RegistrySettings
from tests.lifecycle_fakes import FakeOwners
from tests.unit.monitor import loanstream
from tests.unit.registry.helpers import torchscript_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DRIFTING = "loan_mon"  # the shipped loan spec under another name
SMALL = "loan_mon_small"  # the same with small windows, for the rollback
DRIFT_AT = 2000
SCORER = loanstream.rule_scorer()


def _write_usecases(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, drift in ((DRIFTING, {}), (SMALL, {"window": 200, "min_samples": 200})):
        data = yaml.safe_load((DEFAULT_DIR / "loan_approval.yaml").read_text())
        data["name"] = name
        data["drift"].update(drift)
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return directory


class _LaterMonitor:
    """The registry's client of the monitor, which starts after the registry (and again
    after a restart): calls go to whichever monitor was connected last."""

    def __init__(self) -> None:
        self._channel: grpc.aio.Channel | None = None
        self._client: GrpcMonitor | None = None

    def connect(self, channel: grpc.aio.Channel) -> None:
        self._channel, self._client = channel, GrpcMonitor(channel)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._client = None

    async def drift_report(self, report_id: str) -> Any:
        if self._client is None:
            raise Unavailable("the monitor is not started")
        return await self._client.drift_report(report_id)

    async def alert(self, use_case: str, alert_id: str) -> Any:
        if self._client is None:
            raise Unavailable("the monitor is not started")
        return await self._client.alert(use_case, alert_id)


@dataclass
class Kit:
    kafka: str
    topics: dict[str, str]
    auth: DevAuth
    tmp: Path
    usecases: dict[str, UseCase]
    registry: registry_grpc.RegistryServiceStub
    registry_port: int
    publisher: EventPublisher
    evaluations: FakeOwners
    monitor_owner: _LaterMonitor
    monitor: Service | None = None
    monitor_stub: pb_grpc.MonitorServiceStub | None = None
    _channel: grpc.aio.Channel | None = None

    def md(self, subject: str = "eve", role: str = "ml-engineer") -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.auth.issue(subject, {'*': [role]})}")]

    def monitor_settings(self) -> MonitorSettings:
        return MonitorSettings(
            grpc_port=0,
            metrics_port=0,
            kafka_bootstrap=self.kafka,
            auth_dir=self.auth.directory,
            database_url=f"sqlite:///{self.tmp / 'monitor.db'}",
            registry_target=f"127.0.0.1:{self.registry_port}",
            service_token=SecretStr(self.auth.issue("svc-monitor", {"*": ["svc-monitor"]})),
            consumer_group=f"monitor-{self.topics['predictions']}",
            predictions_topic=self.topics["predictions"],
            feedback_topic=self.topics["feedback"],
            model_promoted_topic=self.topics["promoted"],
            drift_detected_topic=self.topics["drift"],
            rollback_topic=self.topics["rollback"],
            dead_letter_topic=self.topics["dlq"],
            relay_interval_s=0.2,
        )

    async def start_monitor(self) -> None:
        self.monitor = await build_monitor(
            self.monitor_settings(), setup_telemetry("monitor-test"), usecases=self.usecases
        )
        port = await self.monitor.server.start()
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.monitor_stub = pb_grpc.MonitorServiceStub(self._channel)
        # The registry confirms rollback requests with this (real) monitor.
        self.monitor_owner.connect(
            insecure_channel(
                f"127.0.0.1:{port}", token=self.auth.issue("svc-registry", {"*": ["svc-registry"]})
            )
        )

    async def stop_monitor(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        await self.monitor_owner.close()
        if self.monitor is not None:
            await self.monitor.server.stop()
            await self.monitor.close()
        self.monitor = self._channel = self.monitor_stub = None

    async def send(self, topic: str, events: list[Any]) -> None:
        for start in range(0, len(events), 500):
            await self.publisher.publish_many(
                [
                    Outgoing(self.topics[topic], e, e.use_case, key=getattr(e, "prediction_id", None))
                    for e in events[start : start + 500]
                ]
            )

    async def register(self, use_case: str) -> common_pb2.ModelRef:
        """Register a version with its reference and promote it (auto policy); its ref."""
        uc = self.usecases[use_case]
        response = await self.registry.RegisterModelVersion(
            registry_pb.RegisterModelVersionRequest(
                use_case=use_case,
                model_name=use_case,
                artifact_content=torchscript_model(uc),
                reference_profile_content=json.dumps(
                    loanstream.reference(SCORER, use_case=use_case)
                ).encode(),
            ),
            metadata=self.md("trainer"),
        )
        ref = response.model_version.ref
        evaluated = self.evaluations.confirm_evaluation(
            evaluator_events.ModelEvaluated(report_id=f"eval-{uuid.uuid4().hex[:8]}", model=ref, passed=True)
        )
        await self.publisher.publish(self.topics["evaluated"], evaluated, use_case=use_case, key=use_case)

        async def champion() -> bool:
            got = await self.registry.GetAlias(
                registry_pb.GetAliasRequest(use_case=use_case, model_name=use_case, alias="champion"),
                metadata=self.md(),
            )
            return got.alias.version == ref.version

        await until(_quiet(champion))
        return ref


def _quiet(check: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        try:
            return await check()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return None

    return run


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.2)


async def read_all(kafka: str, topic: str, cls: type[Message], settle: float = 1.0) -> list[Any]:
    """Every event on ``topic`` now (read from the start until ``settle`` seconds bring nothing)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[Any] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(settle * 1000))
            if not batch:
                return out
            for records in batch.values():
                for r in records:
                    headers = dict(r.headers)
                    out.append(
                        (headers, cls.FromString(r.value)) if cls is not Message else (headers, r.value)
                    )
    finally:
        await consumer.stop()


@pytest.fixture
async def kit(kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path) -> AsyncIterator[Kit]:
    names = ("predictions", "feedback", "promoted", "drift", "rollback", "dlq", "evaluated")
    topics = {name: await new_topic(f"monitor-{name}") for name in names}
    auth = DevAuth(tmp_path / "auth").ensure()
    usecases_dir = _write_usecases(tmp_path / "usecases")
    registry_settings = RegistrySettings(
        grpc_port=0,
        metrics_port=0,
        kafka_bootstrap=kafka.bootstrap_servers,
        auth_dir=auth.directory,
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        artifact_root=tmp_path / "artifacts",
        consumer_group=f"registry-{uuid.uuid4().hex[:8]}",
        evaluated_topic=topics["evaluated"],
        rollback_topic=topics["rollback"],
        predictions_topic=topics["predictions"],
        promoted_topic=topics["promoted"],
        dead_letter_topic=topics["dlq"],
    )
    verifier = TokenVerifier(
        load_public_key(auth.public_key),
        issuer=auth.issuer,
        audience=auth.audience,
        revoked=RevocationList(auth.directory / REVOKED_FILE),
    )
    evaluations, monitor_owner = FakeOwners(), _LaterMonitor()
    registry = await build_registry(
        registry_settings,
        setup_telemetry("registry-test"),
        security=ServerSecurity(authenticator=JwtAuthenticator(verifier)),
        usecases=load_default(usecases_dir),
        evaluations=evaluations,
        monitor=monitor_owner,
    )
    port = await registry.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    publisher = EventPublisher(kafka.bootstrap_servers, producer="gateway-test")
    await publisher.start()
    kit = Kit(
        kafka.bootstrap_servers,
        topics,
        auth,
        tmp_path,
        load_default(usecases_dir),
        registry_grpc.RegistryServiceStub(channel),
        port,
        publisher,
        evaluations,
        monitor_owner,
    )
    try:
        await kit.start_monitor()
        yield kit
    finally:
        await kit.stop_monitor()
        await publisher.stop()
        await channel.close()
        await registry.server.stop()
        await registry.close()


def _split(items: list[loanstream.Timed]) -> tuple[list[Any], list[Any]]:
    predictions = [t.event for t in items if isinstance(t.event, gateway_events.PredictionLogged)]
    feedback = [t.event for t in items if isinstance(t.event, gateway_events.FeedbackRecorded)]
    return predictions, feedback


async def _report(kit: Kit, report_id: str) -> pb.DriftReport:
    async def get() -> pb.DriftReport | None:
        assert kit.monitor_stub is not None
        return (
            await kit.monitor_stub.GetDriftReport(
                pb.GetDriftReportRequest(report_id=report_id), metadata=kit.md()
            )
        ).report

    return await until(_quiet(get))


async def test_concept_drift_is_detected_once_soon_after_onset_and_reported(kit: Kit) -> None:
    v1 = await kit.register(DRIFTING)
    model = VersionKey(DRIFTING, DRIFTING, v1.version)
    stream = loanstream.events(SCORER, n=3100, drift_at=DRIFT_AT, model=model)
    start = stream[0].at
    prefix = [t for t in stream if t.index < DRIFT_AT]
    predictions, feedback = _split(prefix)
    # Feedback first, then its predictions: the join takes either order.
    await kit.send("feedback", feedback)
    await kit.send("predictions", predictions)
    stem = f"{DRIFTING}.v{v1.version}"
    last = await _report(kit, f"{stem}.quality.4")  # the monitor has judged the whole prefix
    assert last.evidence and not last.drift_detected
    dist = await _report(kit, f"{stem}.dist.4")
    assert {e.statistic for e in dist.evidence} == {"psi", "ks", "chi2"} and not any(
        e.drifted for e in dist.evidence
    )
    assert kit.monitor_stub is not None
    none = await kit.monitor_stub.ListDriftReports(
        pb.ListDriftReportsRequest(use_case=DRIFTING, drift_only=True), metadata=kit.md()
    )
    assert list(none.reports) == []  # no alarm on the stationary prefix
    assert await read_all(kit.kafka, kit.topics["drift"], monitor_events.DriftDetected, settle=0.5) == []

    rest = [t for t in stream if t.index >= DRIFT_AT]
    predictions, feedback = _split(rest)
    # Interleaved as served: predictions and their outcomes 30 s later.
    await kit.send("predictions", predictions[:300])
    await kit.send("feedback", feedback[:300])

    async def alarm() -> list[Any]:
        return await read_all(kit.kafka, kit.topics["drift"], monitor_events.DriftDetected, settle=0.3)

    ((headers, event),) = await until(alarm)
    assert headers["aif-event-id"].decode() == event.report_id and event.use_case == DRIFTING
    assert event.model.version == v1.version and event.model.model_name == DRIFTING
    (evidence,) = event.evidence
    assert evidence.statistic == "cusum_llr" and evidence.drifted and evidence.value > evidence.threshold
    assert evidence.kind == monitor_events.EVIDENCE_KIND_PERFORMANCE
    alarm_at = round((convert.when(evidence.window_end) - start).total_seconds())
    change_at = round((convert.when(evidence.window_start) - start).total_seconds())
    assert DRIFT_AT - 50 <= alarm_at <= DRIFT_AT + 200, alarm_at  # records (one a second)
    assert DRIFT_AT - 150 <= change_at <= alarm_at  # the estimated change point, for retraining

    detected = await kit.monitor_stub.ListDriftReports(
        pb.ListDriftReportsRequest(use_case=DRIFTING, drift_only=True), metadata=kit.md()
    )
    (report,) = detected.reports
    assert report.report_id == event.report_id and report.drift_detected
    assert report.window.start == evidence.window_start
    alerts = await kit.monitor_stub.ListAlerts(
        pb.ListAlertsRequest(use_case=DRIFTING, open_only=True), metadata=kit.md()
    )
    (alert,) = alerts.alerts
    assert alert.report_id == event.report_id and alert.severity == pb.ALERT_SEVERITY_CRITICAL
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await kit.monitor_stub.ListAlerts(pb.ListAlertsRequest(), metadata=kit.md("app", "app"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await kit.monitor_stub.GetDriftReport(pb.GetDriftReportRequest(report_id="nope"), metadata=kit.md())
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # A bad event is dead-lettered with the reason; the monitor carries on.
    bad = gateway_events.FeedbackRecorded(prediction_id="x", use_case=DRIFTING)
    bad.outcome.string_value = "maybe"
    await kit.send("feedback", [bad])
    ((dlq_headers, _),) = await until(lambda: read_all(kit.kafka, kit.topics["dlq"], Message, settle=0.3))
    assert dlq_headers["aif-dlq-reason"].startswith(b"outcome: 'maybe' is not one of")
    assert dlq_headers["aif-dlq-error"] == b"InvalidArgument"

    # Restart: the same database and consumer group; the drift goes on (the window in
    # progress is lost with the process: 800 more records close the next one); no second alarm.
    await kit.stop_monitor()
    await kit.start_monitor()
    await kit.send("predictions", predictions[300:])
    await kit.send("feedback", feedback[300:])
    await _report(kit, f"{stem}.quality.5")
    await asyncio.sleep(1.0)
    assert len(await read_all(kit.kafka, kit.topics["drift"], monitor_events.DriftDetected)) == 1
    store = MonitorStore.from_url(f"sqlite:///{kit.tmp / 'monitor.db'}")
    assert store.pending() == []
    state = store.states()[f"version:{model}"]
    assert state["episode"]["open"] and state["episode"]["report_id"] == event.report_id
    store.close()


async def test_a_worse_new_champion_is_rolled_back_by_the_registry(kit: Kit) -> None:
    v1 = await kit.register(SMALL)
    good = loanstream.events(SCORER, n=600, model=VersionKey(SMALL, SMALL, v1.version), prefix="a")
    predictions, feedback = _split(good)
    await kit.send("predictions", predictions)
    await kit.send("feedback", feedback)
    await _report(kit, f"{SMALL}.v{v1.version}.quality.3")

    v2 = await kit.register(SMALL)
    store = MonitorStore.from_url(f"sqlite:///{kit.tmp / 'monitor.db'}")
    watch = f"watch:{SMALL}/{SMALL}/v{v2.version}"
    await until(lambda: asyncio.to_thread(lambda: watch in store.states()))
    # v2 is a bad model: it serves the opposite of the rule, 30% of the time.
    bad = loanstream.events(
        loanstream.rule_scorer(flip=0.3),
        n=1200,
        skip=600,
        model=VersionKey(SMALL, SMALL, v2.version),
        prefix="b",
    )
    predictions, feedback = _split(bad)
    await kit.send("predictions", predictions)
    await kit.send("feedback", feedback)

    async def rolled_back() -> bool:
        got = await kit.registry.GetAlias(
            registry_pb.GetAliasRequest(use_case=SMALL, model_name=SMALL, alias="champion"), metadata=kit.md()
        )
        return got.alias.version == v1.version

    await until(rolled_back)
    requests = await read_all(kit.kafka, kit.topics["rollback"], monitor_events.RollbackRequested)
    ((headers, request),) = requests
    assert request.model.version == v2.version and request.alias == "champion" and "auc" in request.reason
    assert headers["aif-event-id"].decode() == request.request_id
    changes = await read_all(kit.kafka, kit.topics["promoted"], registry_events.AliasChanged)
    rollback = [
        e
        for _, e in changes
        if e.kind == registry_events.ALIAS_CHANGE_KIND_ROLLBACK and e.alias == "champion"
    ]
    assert [(e.old_version, e.new_version) for e in rollback] == [(v2.version, v1.version)]
    assert request.request_id in rollback[0].evidence_ids
    alerts = await kit.monitor_stub.ListAlerts(pb.ListAlertsRequest(use_case=SMALL), metadata=kit.md())  # type: ignore[union-attr]
    assert "rollback" in {a.kind for a in alerts.alerts}
    assert store.states()[watch]["state"] == "rolled_back"
    store.close()


async def test_references_come_from_the_registry(kit: Kit) -> None:
    v1 = await kit.register(SMALL)
    token = kit.auth.issue("svc-monitor", {"*": ["svc-monitor"]})
    channel = insecure_channel(f"127.0.0.1:{kit.registry_port}", token=token)
    try:
        source = RegistryReferences(channel, timeout_s=3)
        doc = await source.reference(VersionKey(SMALL, SMALL, v1.version))
        assert doc is not None and doc["use_case"] == SMALL and "salary" in doc["features"]
        assert await source.reference(VersionKey(SMALL, SMALL, 99)) is None
    finally:
        await channel.close()
    dead = insecure_channel("127.0.0.1:1", token=token)
    try:
        with pytest.raises(Unavailable):
            await RegistryReferences(dead, timeout_s=1).reference(VersionKey(SMALL, SMALL, 1))
    finally:
        await dead.close()
