"""Attacks through the lifecycle topics: events are hints, not authority.

An attacker holds a Kafka producer allowed to write every lifecycle topic and writes the
events that would move models: ``ModelEvaluated`` saying a failed or never-evaluated
version passed, ``RollbackRequested`` for a healthy champion, ``DriftDetected`` with a
made-up report, ``TrainingRequested`` the trainer never accepted, ``AliasChanged`` dated
far ahead (or in the past) naming a failed version. The services
run in this process on the real broker, each with its own database, and confirm events
with the real owners over gRPC (JWT on every call): the registry asks the evaluator and
the monitor, the trainer asks the monitor, the gateway asks the registry. Each forgery
must change nothing (no promotion, pin, rollback, training or serving change) and be
counted in ``aif_events_forged_total{service,type}``; a replayed genuine event is a
no-op; a genuine event still works (the control that shows the checks can pass). A
failed, never-evaluated or archived version is never handed out to be served or exported.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from aifactory.trainer.v1 import events_pb2 as trainer_events
from aifactory.trainer.v1 import trainer_service_pb2 as tr_pb
from aifactory.trainer.v1 import trainer_service_pb2_grpc as tr_grpc
from libs.auth import DevAuth
from libs.bus import EventPublisher
from libs.errors import StatusError
from libs.lifecycle.data import DatasetVersion
from libs.lifecycle.frames import Window
from libs.lifecycle.registry import MetricPoint, ModelKey
from libs.rpc import insecure_channel
from libs.runtime import Service, start_service
from libs.telemetry import Telemetry
from libs.usecase import UseCase, UseCases, load_default
from services.evaluator import convert as evaluator_convert
from services.evaluator.domain import GateResult, Report
from services.evaluator.store import ReportStore
from services.monitor import domain as monitor_domain
from services.monitor.store import MonitorStore
from tests.lifecycle_fakes import FakeRegistry, FakeTrainingData
from tests.security.conftest import attack
from tests.unit.registry.helpers import AUTO, reference_doc, torchscript_model, write_usecases

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EFFECT_TIMEOUT = 60.0
FORGED = "aif_events_forged_total"
EVALUATED = "aifactory.evaluator.v1.ModelEvaluated"
ROLLBACK = "aifactory.monitor.v1.RollbackRequested"
DRIFT = "aifactory.monitor.v1.DriftDetected"
ALIAS = "aifactory.registry.v1.AliasChanged"
REQUESTED = "aifactory.trainer.v1.TrainingRequested"


# ------------------------------------------------------------------ the factory, in process


@dataclass
class Factory:
    auth: DevAuth
    tmp: Path
    kafka: str
    usecases: UseCases
    topics: dict[str, str]
    telemetry: Telemetry | None = None
    services: dict[str, tuple[Service, int]] | None = None

    def common(self, service: str) -> tuple[dict[str, Any], str]:
        """Settings every service shares here (JWT on), and a token for the service's calls."""
        token = self.auth.issue(f"svc-{service}", {"*": ["admin"]}, ttl_seconds=1800)
        settings = {
            "grpc_port": 0,
            "metrics_port": 0,
            "kafka_bootstrap": self.kafka,
            "auth_dir": self.auth.directory,
            "privacy_salt": SecretStr(self.auth.env()["AIF_PRIVACY_SALT"]),
            "dead_letter_topic": self.topics["dlq"],
        }
        return settings, token

    def target(self, name: str) -> str:
        assert self.services is not None
        return f"127.0.0.1:{self.services[name][1]}"

    async def start(self, name: str, settings: Any, build: Any, **deps: Any) -> int:
        service, telemetry = await start_service(settings, functools.partial(build, **deps))
        port = await service.server.start()
        self.telemetry = telemetry
        self.services = self.services or {}
        self.services[name] = (service, port)
        return port

    async def stop(self, name: str) -> None:
        assert self.services is not None
        service, _ = self.services.pop(name)
        await service.server.stop()
        await service.close()

    # -- the services ---------------------------------------------------------------------

    async def evaluator(self) -> None:
        from services.evaluator.app import build
        from services.evaluator.settings import EvaluatorSettings

        base, token = self.common("evaluator")
        settings = EvaluatorSettings(
            **base,
            service_token=SecretStr(token),
            database_url=f"sqlite:///{self.tmp / 'evaluator.db'}",
            consume=False,
        )
        await self.start(
            "evaluator",
            settings,
            build,
            data=FakeTrainingData({}),
            registry=FakeRegistry(),
            usecases=self.usecases,
        )

    async def monitor(self) -> None:
        from services.monitor.app import build
        from services.monitor.references import StaticReferences
        from services.monitor.settings import MonitorSettings

        base, _ = self.common("monitor")
        settings = MonitorSettings(
            **base,
            database_url=self.monitor_url,
            registry_target="",
            consumer_group=f"attack-monitor-{uuid.uuid4().hex[:8]}",
            predictions_topic=self.topics["predictions"],
            feedback_topic=self.topics["feedback"],
            model_promoted_topic=self.topics["promoted"],
            drift_detected_topic=self.topics["drift"],
            rollback_topic=self.topics["rollback"],
        )
        await self.start("monitor", settings, build, references=StaticReferences(), usecases=self.usecases)

    async def registry(self, *, confirm: bool = True) -> None:
        from services.registry.app import build
        from services.registry.settings import RegistrySettings

        base, token = self.common("registry")
        settings = RegistrySettings(
            **base,
            service_token=SecretStr(token),
            database_url=f"sqlite:///{self.tmp / 'registry.db'}",
            artifact_root=self.tmp / "artifacts",
            export_root=self.tmp / "exports",
            consumer_group=f"attack-registry-{uuid.uuid4().hex[:8]}",
            evaluated_topic=self.topics["evaluated"],
            rollback_topic=self.topics["rollback"],
            predictions_topic=self.topics["predictions"],
            promoted_topic=self.topics["promoted"],
            evaluator_target=self.target("evaluator") if confirm else "",
            monitor_target=self.target("monitor") if confirm else "",
        )
        await self.start("registry", settings, build, usecases=self.usecases)

    async def trainer(self) -> None:
        from services.trainer.app import build
        from services.trainer.settings import TrainerSettings

        base, token = self.common("trainer")
        settings = TrainerSettings(
            **base,
            service_token=SecretStr(token),
            database_url=f"sqlite:///{self.tmp / 'trainer.db'}",
            consumer_group=f"attack-trainer-{uuid.uuid4().hex[:8]}",
            training_requested_topic=self.topics["requested"],
            drift_detected_topic=self.topics["drift"],
            model_trained_topic=self.topics["trained"],
            monitor_target=self.target("monitor"),
            dependency_attempts=1,
            dependency_backoff_s=0.05,
        )
        await self.start(
            "trainer",
            settings,
            build,
            data=FakeTrainingData({}),
            registry=FakeRegistry(),
            usecases=self.usecases,
        )

    async def gateway(self) -> Any:
        from services.gateway.app import build
        from services.gateway.settings import GatewaySettings

        base, token = self.common("gateway")
        settings = GatewaySettings(
            **base,
            service_token=SecretStr(token),
            oip_port=-1,
            use_cases=AUTO,
            registry_target=self.target("registry"),
            featurestore_target="127.0.0.1:9",
            model_promoted_topic=self.topics["promoted"],
            predictions_topic=self.topics["predictions"],
            feedback_topic=self.topics["feedback"],
            load_timeout_s=5,
            warmup_requests=0,
        )
        await self.start("gateway", settings, build, usecases=self.usecases)
        assert self.services is not None
        return self.services["gateway"][0]

    @property
    def monitor_url(self) -> str:
        return f"sqlite:///{self.tmp / 'monitor.db'}"

    # -- reading what happened -------------------------------------------------------------

    def forged(self, service: str, event_type: str) -> float:
        """``aif_events_forged_total{service, type}`` as Prometheus scrapes it."""
        assert self.telemetry is not None
        for family in text_string_to_metric_families(self.telemetry.prometheus_text()):
            for sample in family.samples:
                if (
                    sample.name == FORGED
                    and sample.labels.get("service") == service
                    and sample.labels.get("type") == event_type
                ):
                    return float(sample.value)
        return 0.0


@pytest.fixture
async def factory(kafka, new_topic, tmp_path: Path) -> AsyncIterator[Factory]:  # type: ignore[no-untyped-def]
    names = (
        "evaluated", "rollback", "drift", "promoted", "predictions", "feedback", "requested", "trained", "dlq"
    )  # fmt: skip
    topics = {name: await new_topic(f"attack-{name}") for name in names}
    auth = DevAuth(tmp_path / "auth").ensure()
    usecases = load_default(write_usecases(tmp_path / "usecases"))
    # The monitor's database, migrated before it starts: the test writes its genuine reports there.
    MonitorStore.from_url(f"sqlite:///{tmp_path / 'monitor.db'}").close()
    f = Factory(auth, tmp_path, kafka.bootstrap_servers, usecases, topics)
    try:
        yield f
    finally:
        for name in reversed(list(f.services or {})):
            await f.stop(name)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = EFFECT_TIMEOUT) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def counted(f: Factory, service: str, event_type: str, before: float, what: str) -> None:
    """Waits until ``service`` counted one more forged ``event_type`` than ``before``."""

    async def more() -> bool:
        return f.forged(service, event_type) >= before + 1

    await until(more, f"{service} to count the forged {what}")


async def landed(
    f: Factory,
    service: str,
    event_type: str,
    before: float,
    changed: Callable[[], Awaitable[bool]],
    what: str,
) -> bool:
    """Waits (up to EFFECT_TIMEOUT) until the forgery was counted or changed something;
    whether it changed something (the attack succeeded). It must have been counted too."""

    async def settled() -> bool:
        return f.forged(service, event_type) >= before + 1 or await changed()

    with contextlib.suppress(AssertionError):  # neither: not counted, asserted by the caller
        await until(settled, f"{service} to handle the forged {what}")
    return await changed()


# ------------------------------------------------------------------ the registry's state


async def register(
    stub: reg_grpc.RegistryServiceStub, md: Any, uc: UseCase, seed: int
) -> common_pb2.ModelRef:
    reply = await stub.RegisterModelVersion(
        reg_pb.RegisterModelVersionRequest(
            use_case=AUTO,
            model_name=AUTO,
            artifact_content=torchscript_model(uc, seed=seed),
            reference_profile_content=json.dumps(reference_doc(uc)).encode(),
        ),
        metadata=md,
    )
    return reply.model_version.ref


def evaluation(ref: common_pb2.ModelRef, passed: bool) -> Report:
    """An evaluation as the evaluator makes it: the gate's value decides."""
    now = datetime.now(UTC).replace(microsecond=0)
    value = 0.9 if passed else 0.6
    return Report(
        report_id=f"eval-{uuid.uuid4().hex[:12]}",
        model=ModelKey(ref.use_case, ref.model_name, ref.version),
        passed=passed,
        gates=(GateResult("metric_floor", "auc", value, 0.75, passed, ">=", f"auc {value}"),),
        candidate_metrics=(MetricPoint("auc", value, "holdout"),),
        dataset=DatasetVersion(AUTO, "d-1", ""),
        window=Window(now - timedelta(hours=1), now),
        created_at=now,
    )


async def evaluated(
    f: Factory, stub: reg_grpc.RegistryServiceStub, ref: common_pb2.ModelRef, passed: bool
) -> Report:
    """The evaluator's genuine path: its report stored, recorded in the registry over gRPC."""
    report = evaluation(ref, passed)
    store = ReportStore.from_url(f"sqlite:///{f.tmp / 'evaluator.db'}")
    try:
        store.save(report)
    finally:
        store.close()
    await stub.RecordEvaluation(
        reg_pb.RecordEvaluationRequest(evaluation=evaluator_convert.evaluated_pb(report)),
        metadata=f.auth.metadata("svc-evaluator"),
    )
    return report


@dataclass
class Models:
    """v1 and v2 passed (v2 champion, v1 previous), v3 failed, v4 never evaluated."""

    stub: reg_grpc.RegistryServiceStub
    md: Any
    refs: list[common_pb2.ModelRef]
    reports: dict[int, Report]

    async def champion(self) -> int:
        try:
            reply = await self.stub.GetAlias(
                reg_pb.GetAliasRequest(use_case=AUTO, model_name=AUTO, alias="champion"), metadata=self.md
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return 0
            raise
        return int(reply.alias.version)

    async def status(self, version: int) -> int:
        ref = common_pb2.ModelRef(use_case=AUTO, model_name=AUTO, version=version)
        reply = await self.stub.GetModelVersion(reg_pb.GetModelVersionRequest(ref=ref), metadata=self.md)
        return int(reply.model_version.status)

    async def audit(self) -> list[str]:
        reply = await self.stub.ListAuditEvents(
            reg_pb.ListAuditEventsRequest(use_case=AUTO, page_size=1000), metadata=self.md
        )
        return [e.action for e in reply.audit_events]

    async def state(self) -> tuple[int, list[int], list[str]]:
        """What an attack must not change: the champion, every status, the audit trail."""
        return await self.champion(), [await self.status(v) for v in (1, 2, 3, 4)], await self.audit()

    def changed(self, before: tuple[int, list[int], list[str]]) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await self.state() != before

        return check


async def models(f: Factory, channel: grpc.aio.Channel) -> Models:
    stub = reg_grpc.RegistryServiceStub(channel)
    md = f.auth.metadata()
    refs = [await register(stub, md, f.usecases[AUTO], seed) for seed in (1, 2, 3, 4)]
    reports = {
        v: await evaluated(f, stub, refs[v - 1], passed) for v, passed in ((1, True), (2, True), (3, False))
    }
    m = Models(stub, md, refs, reports)
    assert await m.champion() == 2
    assert [await m.status(v) for v in (1, 2, 3, 4)] == [
        reg_pb.MODEL_VERSION_STATUS_APPROVED,
        reg_pb.MODEL_VERSION_STATUS_APPROVED,
        reg_pb.MODEL_VERSION_STATUS_EVALUATION_FAILED,
        reg_pb.MODEL_VERSION_STATUS_CANDIDATE,
    ]
    return m


def passing_gates() -> list[evaluator_events.GateResult]:
    return [
        evaluator_events.GateResult(
            gate="metric_floor", metric="auc", value=0.99, threshold=0.75, passed=True, comparator=">="
        )
    ]


async def publish(
    f: Factory, topic: str, event: Message, *, producer: str, event_id: str | None = None
) -> None:
    # The attacker signs its events as the owner would: headers prove nothing.
    async with EventPublisher(f.kafka, producer=producer) as pub:
        await pub.publish(f.topics[topic], event, use_case=AUTO, key=AUTO, event_id=event_id)


# ------------------------------------------------------------------ the attacks


async def test_forged_verdicts_promote_nothing_and_replays_change_nothing(factory: Factory) -> None:
    f = factory
    await f.evaluator()
    await f.monitor()
    await f.registry()
    async with insecure_channel(f.target("registry")) as channel:
        m = await models(f, channel)
        before = await m.state()
        v3, v4 = m.refs[2], m.refs[3]
        forgeries = {
            # A version never evaluated, with a report id the evaluator never wrote.
            "never evaluated, made-up report": evaluator_events.ModelEvaluated(
                report_id=f"eval-{uuid.uuid4().hex[:12]}", model=v4, passed=True, gates=passing_gates()
            ),
            # The failed version's own report, its verdict and gates rewritten to "passed".
            "failed version, its report's verdict flipped": evaluator_events.ModelEvaluated(
                report_id=m.reports[3].report_id, model=v3, passed=True, gates=passing_gates()
            ),
            # A genuine passing report (v2's), claimed for the never-evaluated version.
            "never evaluated, another version's report": evaluator_events.ModelEvaluated(
                report_id=m.reports[2].report_id, model=v4, passed=True, gates=passing_gates()
            ),
        }
        for what, forged in forgeries.items():
            count = f.forged("registry", EVALUATED)
            await publish(f, "evaluated", forged, producer="evaluator")
            succeeded = await landed(f, "registry", EVALUATED, count, m.changed(before), what)
            attack(succeeded=succeeded)
            assert not succeeded, what
            await counted(f, "registry", EVALUATED, count, what)

        # The genuine verdict of v2 again, as the evaluator published it (same event id): a no-op.
        genuine = evaluator_convert.evaluated_pb(m.reports[2])
        event_id = f"{m.reports[2].report_id}.evaluated"
        count = f.forged("registry", EVALUATED)
        await publish(f, "evaluated", genuine, producer="evaluator", event_id=event_id)
        await publish(f, "evaluated", genuine, producer="evaluator", event_id=event_id)
        # A forgery after them: once it is counted, the replays before it were handled.
        await publish(f, "evaluated", forgeries["never evaluated, made-up report"], producer="evaluator")
        await counted(f, "registry", EVALUATED, count, "forged verdict after the replays")
        assert f.forged("registry", EVALUATED) == count + 1, "a genuine replay was counted as forged"
        after = await m.state()
        attack(succeeded=after != before)
        assert after == before


async def test_a_forged_rollback_archives_nothing_and_a_genuine_one_still_works(factory: Factory) -> None:
    f = factory
    await f.evaluator()
    await f.monitor()
    await f.registry()
    async with insecure_channel(f.target("registry")) as channel:
        m = await models(f, channel)
        before = await m.state()
        v1, v2 = m.refs[0], m.refs[1]
        now = datetime.now(UTC)
        # The monitor's own records: a drift report about v1 (not the champion) and a
        # resolved rollback alert about v2, each named by a forgery below.
        store = MonitorStore.from_url(f.monitor_url)
        key1, key2 = (monitor_domain.VersionKey(AUTO, AUTO, v) for v in (1, 2))
        store.commit(
            monitor_domain.Effects(
                reports=[monitor_domain.Report("drift-v1", key1, True, (), now, now, now)],
                alerts=[
                    monitor_domain.Alert(
                        "alert.rb-old",
                        key2,
                        monitor_domain.Severity.CRITICAL,
                        "rollback",
                        "old",
                        "",
                        now,
                        now,
                    ),
                    monitor_domain.Alert(
                        "alert.rb-v1", key1, monitor_domain.Severity.CRITICAL, "rollback", "v1", "", now
                    ),
                ],
            ),
            now,
        )
        forgeries = {
            "healthy champion, made-up request": monitor_events.RollbackRequested(
                request_id=f"rb-{uuid.uuid4().hex[:8]}", use_case=AUTO, model=v2, alias="champion",
                reason="live auc fell", evidence_ids=["drift-made-up"],
            ),
            "healthy champion, a real alert about another version": monitor_events.RollbackRequested(
                request_id="rb-v1", use_case=AUTO, model=v2, alias="champion", evidence_ids=["drift-v1"]
            ),
            "healthy champion, a resolved alert": monitor_events.RollbackRequested(
                request_id="rb-old", use_case=AUTO, model=v2, alias="champion"
            ),
        }  # fmt: skip
        for what, forged in forgeries.items():
            count = f.forged("registry", ROLLBACK)
            await publish(f, "rollback", forged, producer="monitor")
            succeeded = await landed(f, "registry", ROLLBACK, count, m.changed(before), what)
            attack(succeeded=succeeded)
            assert not succeeded, what
            await counted(f, "registry", ROLLBACK, count, what)

        # The control: the monitor's genuine open alert about the champion rolls it back.
        store.commit(
            monitor_domain.Effects(
                alerts=[
                    monitor_domain.Alert(
                        "alert.rb-real",
                        key2,
                        monitor_domain.Severity.CRITICAL,
                        "rollback",
                        "live auc fell",
                        "",
                        now,
                    )
                ]
            ),
            now,
        )
        store.close()
        await publish(
            f,
            "rollback",
            monitor_events.RollbackRequested(request_id="rb-real", use_case=AUTO, model=v2, alias="champion"),
            producer="monitor",
        )

        async def rolled_back() -> bool:
            return await m.champion() == v1.version

        await until(rolled_back, "the genuine rollback to v1")
        assert await m.status(2) == reg_pb.MODEL_VERSION_STATUS_ARCHIVED


async def test_a_forged_drift_report_trains_nothing(factory: Factory) -> None:
    f = factory
    await f.monitor()
    await f.trainer()
    model = common_pb2.ModelRef(use_case=AUTO, model_name=AUTO, version=1)
    now = datetime.now(UTC)
    key = monitor_domain.VersionKey(AUTO, AUTO, 1)
    store = MonitorStore.from_url(f.monitor_url)
    store.commit(
        monitor_domain.Effects(reports=[monitor_domain.Report("quiet-v1", key, False, (), now, now, now)]),
        now,
    )
    async with insecure_channel(f.target("trainer")) as channel:
        stub = tr_grpc.TrainerServiceStub(channel)

        async def jobs() -> list[tr_pb.TrainingJob]:
            reply = await stub.ListTrainingJobs(
                tr_pb.ListTrainingJobsRequest(use_case=AUTO, page_size=100), metadata=f.auth.metadata()
            )
            return list(reply.jobs)

        async def trained() -> bool:
            return bool(await jobs())

        far = common_pb2.ModelRef(use_case=AUTO, model_name=AUTO, version=9)
        forgeries = {
            "made-up report": monitor_events.DriftDetected(
                report_id=f"drift-{uuid.uuid4().hex[:8]}", use_case=AUTO, model=model
            ),
            "a real report that found no drift": monitor_events.DriftDetected(
                report_id="quiet-v1", use_case=AUTO, model=model
            ),
            "a real report about another version": monitor_events.DriftDetected(
                report_id="quiet-v1", use_case=AUTO, model=far
            ),
        }
        for what, forged in forgeries.items():
            forged.detected_at.FromDatetime(now + timedelta(days=3650))
            count = f.forged("trainer", DRIFT)
            await publish(f, "drift", forged, producer="monitor")
            succeeded = await landed(f, "trainer", DRIFT, count, trained, what)
            attack(succeeded=succeeded)
            assert not succeeded, what
            await counted(f, "trainer", DRIFT, count, what)

        # The control: the monitor's genuine drift report starts one training, and its
        # replay (the same event again) no second one.
        store.commit(
            monitor_domain.Effects(
                reports=[monitor_domain.Report("drift-real", key, True, (), now, now, now)]
            ),
            now,
        )
        store.close()
        genuine = monitor_events.DriftDetected(report_id="drift-real", use_case=AUTO, model=model)
        for _ in range(2):
            await publish(f, "drift", genuine, producer="monitor", event_id="drift-real")

        async def one() -> bool:
            return any(j.drift_report_id == "drift-real" for j in await jobs())

        await until(one, "the genuine drift report's training")
        count = f.forged("trainer", DRIFT)
        await publish(f, "drift", forgeries["made-up report"], producer="monitor")
        await counted(f, "trainer", DRIFT, count, "the forgery after the replay")
        assert [j.drift_report_id for j in await jobs()] == ["drift-real"]


async def test_a_forged_training_request_trains_nothing(factory: Factory) -> None:
    f = factory
    await f.monitor()
    await f.trainer()
    async with insecure_channel(f.target("trainer")) as channel:
        stub = tr_grpc.TrainerServiceStub(channel)

        async def jobs() -> list[str]:
            reply = await stub.ListTrainingJobs(
                tr_pb.ListTrainingJobsRequest(use_case=AUTO, page_size=100), metadata=f.auth.metadata()
            )
            return sorted(j.job_id for j in reply.jobs)

        async def trained() -> bool:
            return bool(await jobs())

        forgeries = {
            "a manual request never submitted": trainer_events.TrainingRequested(
                request_id=f"req-{uuid.uuid4().hex[:8]}",
                use_case=AUTO,
                reason=trainer_events.TRAINING_REASON_MANUAL,
                params={"epochs": "1"},
            ),
            "a drift request naming a made-up report": trainer_events.TrainingRequested(
                request_id=f"drift-{uuid.uuid4().hex[:8]}",
                use_case=AUTO,
                reason=trainer_events.TRAINING_REASON_DRIFT,
                drift_report_id=f"drift-{uuid.uuid4().hex[:8]}",
            ),
        }
        for what, forged in forgeries.items():
            count = f.forged("trainer", REQUESTED)
            await publish(f, "requested", forged, producer="trainer", event_id=forged.request_id)
            succeeded = await landed(f, "trainer", REQUESTED, count, trained, what)
            attack(succeeded=succeeded)
            assert not succeeded, what
            await counted(f, "trainer", REQUESTED, count, what)

        # The control: a request submitted over the API (authenticated) is one job, and the
        # trainer's own record of it on the topic is confirmed by its store, not counted.
        count = f.forged("trainer", REQUESTED)
        await stub.SubmitTraining(
            tr_pb.SubmitTrainingRequest(use_case=AUTO, request_id="req-real"), metadata=f.auth.metadata()
        )
        forged = forgeries["a manual request never submitted"]
        await publish(f, "requested", forged, producer="trainer", event_id=forged.request_id)
        await counted(f, "trainer", REQUESTED, count, "the forgery after the genuine record")
        assert f.forged("trainer", REQUESTED) == count + 1, "the trainer's own record was counted as forged"
        assert await jobs() == ["req-real"]


async def test_a_forged_alias_change_pins_nothing_across_restarts(factory: Factory) -> None:
    f = factory
    await f.registry(confirm=False)
    async with insecure_channel(f.target("registry")) as channel:
        m = await models(f, channel)
        gateway = await f.gateway()

        async def follows() -> bool:
            return bool(gateway.book.version(AUTO, "champion") == 2)

        await until(follows, "the gateway to serve the champion, v2")

        async def pinned() -> bool:  # the failed version, v3, served as champion
            return bool(gateway.book.version(AUTO, "champion") == 3)

        failed = m.refs[2]
        forged = registry_events.AliasChanged(
            use_case=AUTO,
            model_name=AUTO,
            alias="champion",
            new_version=failed.version,
            old_version=2,
            kind=registry_events.ALIAS_CHANGE_KIND_SET,
            reason="hotfix",
            audit_event_id=f"audit-{uuid.uuid4().hex[:8]}",
        )
        forged.changed_at.FromDatetime(datetime.now(UTC) + timedelta(days=3650))
        count = f.forged("gateway", ALIAS)
        await publish(f, "promoted", forged, producer="registry")
        what = "alias change dated ten years ahead"
        succeeded = await landed(f, "gateway", ALIAS, count, pinned, what)
        attack(succeeded=succeeded)
        assert not succeeded
        await counted(f, "gateway", ALIAS, count, what)

        # A restart reads the topic from the beginning again: the forgery still pins nothing.
        await f.stop("gateway")
        count = f.forged("gateway", ALIAS)
        gateway = await f.gateway()
        what = "the same forgery after a restart"
        succeeded = await landed(f, "gateway", ALIAS, count, pinned, what)
        attack(succeeded=succeeded)
        assert not succeeded
        await counted(f, "gateway", ALIAS, count, what)
        await until(follows, "the restarted gateway to serve v2")
        assert not await pinned()

        # A genuine change replayed (v2's promotion, as the registry published it) is a no-op.
        genuine = registry_events.AliasChanged(
            use_case=AUTO, model_name=AUTO, alias="champion", new_version=2, old_version=1, reason="replay"
        )
        genuine.changed_at.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
        count = f.forged("gateway", ALIAS)
        await publish(f, "promoted", genuine, producer="registry")
        await publish(f, "promoted", forged, producer="registry")
        await counted(f, "gateway", ALIAS, count, "the forgery after the replay")
        assert f.forged("gateway", ALIAS) == count + 1 and gateway.book.version(AUTO, "champion") == 2

        # Dated in the past (before the registry's last change, so older than the gateway's
        # entry): not a stale no-op but a change the registry never made, counted as forged.
        past = registry_events.AliasChanged()
        past.CopyFrom(forged)
        past.audit_event_id = f"audit-{uuid.uuid4().hex[:8]}"
        past.changed_at.FromDatetime(datetime.now(UTC) - timedelta(days=1))
        count = f.forged("gateway", ALIAS)
        await publish(f, "promoted", past, producer="registry")
        what = "alias change dated a day back"
        succeeded = await landed(f, "gateway", ALIAS, count, pinned, what)
        attack(succeeded=succeeded)
        assert not succeeded
        await counted(f, "gateway", ALIAS, count, what)

        # A restart replays the topic: the registry's own superseded change (v1 champion, its
        # audit entry in the registry's log) is a no-op; only the three forgeries count. A
        # last forgery marks the end of the replay (one key: one partition, in order).
        await f.stop("gateway")
        count = f.forged("gateway", ALIAS)
        gateway = await f.gateway()
        await publish(f, "promoted", past, producer="registry")
        await counted(f, "gateway", ALIAS, count + 3, "the replayed forgeries and the last one")
        assert f.forged("gateway", ALIAS) == count + 4, "the registry's own history was counted as forged"
        assert gateway.book.version(AUTO, "champion") == 2


async def test_a_failed_or_archived_version_is_never_exported_or_loadable(factory: Factory) -> None:
    from services.gateway.bundles import RegistryBundles

    f = factory
    await f.registry(confirm=False)
    async with insecure_channel(f.target("registry")) as channel:
        m = await models(f, channel)
        await m.stub.Rollback(
            reg_pb.RollbackRequest(use_case=AUTO, model_name=AUTO, alias="champion", reason="bad"),
            metadata=f.auth.metadata("ann", {"*": ["approver"]}),
        )
        assert await m.champion() == 1 and await m.status(2) == reg_pb.MODEL_VERSION_STATUS_ARCHIVED
        gateway_md = f.auth.metadata("svc-gateway")
        for version in (2, 3, 4):  # archived, failed, never evaluated
            ref = common_pb2.ModelRef(use_case=AUTO, model_name=AUTO, version=version)
            for call in (
                m.stub.GetServingBundle(reg_pb.GetServingBundleRequest(ref=ref), metadata=gateway_md),
                m.stub.ExportModelVersion(
                    reg_pb.ExportModelVersionRequest(ref=ref), metadata=f.auth.metadata()
                ),
            ):
                try:
                    await call
                    handed_out = True
                except grpc.aio.AioRpcError as exc:
                    handed_out = False
                    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()
                attack(succeeded=handed_out)
                assert not handed_out, f"v{version} was handed out to be served or exported"
        # The gateway's own loader, asked for the failed version, gets nothing to load.
        token = f.auth.issue("svc-gateway", {"*": ["admin"]}, ttl_seconds=600)
        async with insecure_channel(f.target("registry"), token=token) as gw_channel:
            bundles = RegistryBundles(gw_channel)
            try:
                await bundles.plan(AUTO, AUTO, frozenset({3}))
                loaded, code = True, None
            except StatusError as exc:
                loaded, code = False, exc.code
            attack(succeeded=loaded)
            assert not loaded and code == grpc.StatusCode.FAILED_PRECONDITION
            assert (await bundles.plan(AUTO, AUTO, frozenset({1}))).files  # the champion loads
        assert not list((f.tmp / "exports").rglob("model.pt"))
