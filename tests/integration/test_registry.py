"""The registry on real parts: the same suite on SQLite and on PostgreSQL, the service on the
real broker (events in and out), JWT callers for the approval roles, and the Triton export
loaded and run by the running Triton server."""
from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from google.protobuf.message import Message
from sqlalchemy import text

from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.registry.v1 import registry_service_pb2 as pb
from aifactory.registry.v1 import registry_service_pb2_grpc as pb_grpc
from libs import infra
from libs.auth import REVOKED_FILE, DevAuth, JwtAuthenticator, RevocationList, TokenVerifier, load_public_key
from libs.bus import EventPublisher
from libs.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from libs.rpc import ServerSecurity
from libs.telemetry import setup_telemetry
from services.registry.app import build
from services.registry.artifacts import ArtifactCorrupted, ArtifactStore
from services.registry.core import Registry, utcnow
from services.registry.domain import (
    CHAMPION,
    PREVIOUS,
    AliasChangeKind,
    DatasetRef,
    Evaluation,
    FeatureRef,
    GateResult,
    Metric,
    ModelKey,
    NewRun,
    NewVersion,
    PredictionEntry,
    RunStatus,
    VersionKey,
    VersionStatus,
)
from services.registry.export import TritonExporter
from services.registry.runs import RunTracker
from services.registry.settings import RegistrySettings
from services.registry.store import SqlStore, open_store
from services.registry.store.tables import Base
from tests.unit.registry.helpers import (
    AUTO,
    GATED,
    principal,
    reference_doc,
    torchscript_model,
    usecases,
    write_usecases,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

USECASES = usecases()
ENGINEER = principal("eve", "ml-engineer")
APPROVER = principal("ann", "approver", use_case=GATED)


# ---------------------------------------------------------------- backends

@pytest.fixture(scope="module")
def postgres() -> Iterator[infra.PostgresHandle]:
    handle = infra.ensure_postgres()
    yield handle
    handle.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database per test: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    dsn = request.getfixturevalue("postgres").dsn
    schema = f"registry_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield dsn.replace("postgresql://", "postgresql+psycopg://", 1) + f"?options=-csearch_path%3D{schema}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@dataclass
class Kit:
    registry: Registry
    runs: RunTracker
    store: SqlStore
    artifacts: ArtifactStore
    repo: Path
    url: str


@pytest.fixture
def kit(database_url: str, tmp_path: Path) -> Iterator[Kit]:
    store = open_store(database_url)
    artifacts = ArtifactStore(tmp_path / "artifacts")
    repo = tmp_path / "triton"
    registry = Registry(store, artifacts, USECASES, TritonExporter(repo, artifacts), clock=utcnow)
    yield Kit(registry, RunTracker(store, USECASES, utcnow), store, artifacts, repo, database_url)
    store.close()


MODEL = torchscript_model(USECASES[AUTO])
REFERENCE = {uc: json.dumps(reference_doc(USECASES[uc])).encode() for uc in (AUTO, GATED)}


def register(kit: Kit, use_case: str = AUTO, who: Any = ENGINEER, **fields: Any) -> Any:
    new = NewVersion(use_case=use_case, name=fields.pop("name", use_case), **fields)
    return kit.registry.register_version(new, who, artifact=MODEL, reference_profile=REFERENCE[use_case])


def verdict(key: VersionKey, passed: bool, report_id: str | None = None) -> Evaluation:
    gates = (GateResult("metric_floor", "auc", 0.9 if passed else 0.6, 0.75, passed, ">="),)
    return Evaluation(report_id or f"report-{uuid.uuid4().hex[:8]}", key, passed, gates=gates,
                      metrics=(Metric("auc", 0.9 if passed else 0.6, "holdout"),))


def champion(kit: Kit, use_case: str = AUTO) -> int:
    alias, _ = kit.registry.get_alias(ModelKey(use_case, use_case), CHAMPION)
    return alias.version


def pending_events(kit: Kit) -> list[tuple[str, int, int, AliasChangeKind]]:
    return [(i.change.alias, i.change.old_version, i.change.new_version, i.change.kind)
            for i in kit.store.pending_outbox(1000)]


# ---------------------------------------------------------------- the suite, both backends

def test_migrations_create_exactly_the_tables_the_store_uses(kit: Kit) -> None:
    with kit.store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []
    kit.store.migrate()  # at head already: a no-op


def test_register_numbers_versions_exports_them_and_is_idempotent(kit: Kit) -> None:
    v1 = register(kit, idempotency_key="run-1")
    v2 = register(kit, idempotency_key="run-2")
    assert (v1.version, v2.version, v1.status) == (1, 2, VersionStatus.CANDIDATE)
    assert register(kit, idempotency_key="run-1") == v1
    assert kit.artifacts.read(v1.artifact_sha256) == MODEL
    assert json.loads(kit.artifacts.read(v1.reference_sha256))["use_case"] == AUTO
    model_dir = kit.repo / AUTO
    assert (model_dir / "2" / "model.pt").read_bytes() == MODEL
    assert {"config.pbtxt", "config.gpu.pbtxt", "1", "2"} <= {p.name for p in model_dir.iterdir()}
    actions = [r.action for r in kit.registry.list_audit(AUTO)]
    assert actions == ["model.created", "model_version.registered", "model_version.exported",
                       "model_version.registered", "model_version.exported"]
    listed = kit.registry.list_versions(AUTO)
    assert [v.version for v in listed] == [2, 1]
    assert kit.registry.list_audit(AUTO)[1].actor.subject == "eve"


def test_bad_input_is_refused_naming_the_field(kit: Kit) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"use_case": "nope"}, "use_case"),
        ({"name": "../escape"}, "model_name"),
        ({"artifact": b"not a model"}, "artifact_content"),
        ({"artifact": b"", "artifact_sha256": "xyz"}, "artifact_sha256"),
        ({"artifact": b""}, "artifact_content"),
        ({"run_id": "no-such-run"}, "run_id"),
        ({"reference_profile": b"{}"}, "reference_profile_content.features"),
        ({"metrics": (Metric("auc", float("nan")),)}, "metrics[0].value"),
    ]
    for change, field in cases:
        args: dict[str, Any] = {"artifact": MODEL, "reference_profile": REFERENCE[AUTO]}
        new: dict[str, Any] = {"use_case": AUTO, "name": AUTO}
        for k, v in change.items():
            (args if k in args else new)[k] = v
        with pytest.raises(InvalidArgument) as info:
            kit.registry.register_version(NewVersion(**new), ENGINEER, **args)
        assert info.value.field == field, change
    with pytest.raises(NotFound):
        kit.registry.register_version(NewVersion(AUTO, AUTO, artifact_sha256="0" * 64), ENGINEER)
    with pytest.raises(NotFound):
        kit.registry.get_version(VersionKey(AUTO, AUTO, 7))
    register(kit)
    with pytest.raises(InvalidArgument) as info:  # a model name belongs to one use case
        register(kit, GATED, name=AUTO)
    assert info.value.field == "model_name"
    assert kit.registry.verify_audit().valid


def test_auto_policy_promotes_a_passed_candidate(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    out = kit.registry.apply_evaluation(verdict(v1.key, True))
    assert out.promoted and out.version.status is VersionStatus.APPROVED and champion(kit) == 1
    kit.registry.apply_evaluation(verdict(v2.key, True))
    assert champion(kit) == 2
    assert kit.registry.get_alias(ModelKey(AUTO, AUTO), PREVIOUS)[0].version == 1
    assert pending_events(kit) == [(CHAMPION, 0, 1, AliasChangeKind.PROMOTE),
                                   (PREVIOUS, 0, 1, AliasChangeKind.PROMOTE),
                                   (CHAMPION, 1, 2, AliasChangeKind.PROMOTE)]
    assert kit.registry.get_version(v2.key).aliases == (CHAMPION,)


def test_a_failing_candidate_is_never_promoted(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    kit.registry.apply_evaluation(verdict(v1.key, True))
    out = kit.registry.apply_evaluation(verdict(v2.key, False))
    assert not out.promoted and out.version.status is VersionStatus.EVALUATION_FAILED and champion(kit) == 1
    with pytest.raises(FailedPrecondition, match="evaluation_failed"):
        kit.registry.set_alias(v2.key, CHAMPION, ENGINEER)
    # A later passing report does not resurrect a decided version either.
    kit.registry.apply_evaluation(verdict(v2.key, True))
    assert kit.registry.get_version(v2.key).status is VersionStatus.EVALUATION_FAILED and champion(kit) == 1
    evaluated = [r for r in kit.registry.list_audit(AUTO) if r.action == "model_version.evaluated"]
    assert [r.details["to_status"] for r in evaluated] == ["approved", "evaluation_failed", "evaluation_failed"]


def test_approval_policy_waits_and_only_an_approver_decides(kit: Kit) -> None:
    v1 = register(kit, GATED)
    out = kit.registry.apply_evaluation(verdict(v1.key, True))
    assert out.version.status is VersionStatus.PENDING_APPROVAL and not out.promoted
    with pytest.raises(NotFound):
        champion(kit, GATED)
    for who in (ENGINEER, principal("bob", "approver", use_case=AUTO), principal("root", "admin")):
        with pytest.raises(PermissionDenied):
            kit.registry.approve(v1.key, True, who)
    with pytest.raises(PermissionDenied):  # not by the back door either
        kit.registry.set_alias(v1.key, CHAMPION, ENGINEER)
    version, audit_id = kit.registry.approve(v1.key, True, APPROVER, "looks good", ["ticket-7"])
    assert version.status is VersionStatus.APPROVED and champion(kit, GATED) == 1
    entry = next(r for r in kit.registry.list_audit(GATED) if r.event_id == audit_id)
    assert (entry.action, entry.actor.subject, entry.actor.roles) == ("model_version.approved", "ann", ("approver",))
    assert set(entry.evidence_ids) == {"ticket-7", version.evaluation_report_id}
    with pytest.raises(FailedPrecondition):
        kit.registry.approve(v1.key, True, APPROVER)
    v2 = register(kit, GATED)
    kit.registry.apply_evaluation(verdict(v2.key, True))
    rejected, _ = kit.registry.approve(v2.key, False, APPROVER, "not now")
    assert rejected.status is VersionStatus.REJECTED and champion(kit, GATED) == 1


def test_rollback_restores_the_previous_champion(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    for v in (v1, v2):
        kit.registry.apply_evaluation(verdict(v.key, True))
    model = ModelKey(AUTO, AUTO)
    # An alarm about a version that is no longer champion changes nothing.
    assert kit.registry.rollback(model, None, only_if_current=1, event_id="alarm-0") is None
    result = kit.registry.rollback(model, None, reason="auc dropped", evidence=["drift-9"], only_if_current=2,
                                   event_id="alarm-1")
    assert result is not None and result.previous_version == 2 and champion(kit) == 1
    assert kit.registry.rollback(model, None, only_if_current=2, event_id="alarm-1") is None  # replayed
    assert kit.registry.get_version(v2.key).status is VersionStatus.ARCHIVED
    with pytest.raises(NotFound):
        kit.registry.get_alias(model, PREVIOUS)
    with pytest.raises(FailedPrecondition, match="previous"):
        kit.registry.rollback(model, ENGINEER)
    with pytest.raises(FailedPrecondition, match="archived"):
        kit.registry.set_alias(v2.key, CHAMPION, ENGINEER)
    assert pending_events(kit)[-2:] == [(CHAMPION, 2, 1, AliasChangeKind.ROLLBACK),
                                        (PREVIOUS, 1, 0, AliasChangeKind.ROLLBACK)]
    assert "model_version.archived" in [r.action for r in kit.registry.lineage(v2.key).audit]


def test_alias_compare_and_set(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    model = ModelKey(AUTO, AUTO)
    assert kit.registry.set_alias(v1.key, "staging", ENGINEER, expected_version=0).previous_version == 0
    with pytest.raises(FailedPrecondition, match="compare-and-set"):
        kit.registry.set_alias(v2.key, "staging", ENGINEER, expected_version=0)
    moved = kit.registry.set_alias(v2.key, "staging", ENGINEER, expected_version=1)
    assert (moved.previous_version, moved.alias.version) == (1, 2)
    assert kit.registry.set_alias(v2.key, "staging", ENGINEER).audit_event_id == ""  # no change, no entry
    with pytest.raises(FailedPrecondition):
        kit.registry.delete_alias(model, "staging", ENGINEER, expected_version=1)
    assert kit.registry.delete_alias(model, "staging", ENGINEER, expected_version=2).previous_version == 2
    assert kit.registry.delete_alias(model, "staging", ENGINEER).audit_event_id == ""
    with pytest.raises(FailedPrecondition, match="candidate"):
        kit.registry.set_alias(v1.key, "challenger", ENGINEER)
    with pytest.raises(InvalidArgument) as info:
        kit.registry.set_alias(v1.key, "Bad Alias", ENGINEER)
    assert info.value.field == "alias"
    assert [k for *_, k in pending_events(kit)] == [AliasChangeKind.SET, AliasChangeKind.SET,
                                                    AliasChangeKind.DELETE]


def test_evaluations_are_idempotent_by_event_and_report_id(kit: Kit) -> None:
    v1 = register(kit)
    ev = verdict(v1.key, True, "report-1")
    assert kit.registry.apply_evaluation(ev, event_id="evt-1", source="t").recorded
    assert not kit.registry.apply_evaluation(ev, event_id="evt-1", source="t").recorded
    assert not kit.registry.apply_evaluation(ev, event_id="evt-2", source="t").recorded  # same report
    assert len(pending_events(kit)) == 1
    assert [e.report_id for e in kit.registry.lineage(v1.key).evaluations] == ["report-1"]


def test_concurrent_metric_logging_and_indexing_lose_nothing(kit: Kit) -> None:
    """Writers that read first (a run's status, then its metrics; prediction ids) used to
    begin as readers on SQLite and fail at once with "database is locked" when another
    writer committed before their write: the trainer lost epoch metrics under load."""
    runs = [kit.runs.create(NewRun(AUTO, AUTO, run_id=f"run-c{i}"), ENGINEER).run_id for i in range(3)]
    steps = 40
    errors: list[BaseException] = []

    def log(run_id: str) -> None:
        try:
            for step in range(steps):
                kit.runs.log_metrics(run_id, [Metric("loss", 1.0 / (step + 1), "train", step)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def index(worker: int) -> None:
        try:
            for i in range(steps):
                kit.registry.index_predictions([PredictionEntry(f"p-{worker}-{i}", AUTO, AUTO, 1, utcnow(), CHAMPION)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=log, args=(r,)) for r in runs]
    threads += [threading.Thread(target=index, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    for run_id in runs:
        assert len([m for m in kit.runs.get(run_id).metrics if m.name == "loss"]) == steps
    assert kit.registry.index_predictions([PredictionEntry(f"p-{w}-{i}", AUTO, AUTO, 1, utcnow(), CHAMPION)
                                           for w in range(2) for i in range(steps)]) == 0


def test_runs_metrics_and_lineage_down_to_a_prediction(kit: Kit) -> None:
    new = NewRun(AUTO, AUTO, run_id="run-42", training_request_id="req-1", drift_report_id="drift-3",
                 params={"lr": "0.003"}, environment={"python": "3.11", "torch": "2.9.1", "host": "box"},
                 code_version="abc123", datasets=(DatasetRef(AUTO, "ds-v1", "file:///d"),), seed=7)
    run = kit.runs.create(new, ENGINEER)
    assert kit.runs.create(new, ENGINEER).run_id == run.run_id == "run-42"  # idempotent
    for epoch in (1, 2, 3):
        kit.runs.log_metrics("run-42", [Metric("loss", 1.0 / epoch, "train", epoch),
                                        Metric("auc", 0.7 + epoch / 100, "validation", epoch)])
    kit.runs.log_metrics("run-42", [Metric("loss", 0.4, "train", 3)])  # the same point again: replaced
    done = kit.runs.finish("run-42", ENGINEER, metrics=[Metric("auc", 0.74, "validation")], duration_s=12.5,
                           features=(FeatureRef(AUTO, "loan_row", "salary", "f1"),))
    assert done.status is RunStatus.FINISHED and done.duration_s == 12.5
    assert kit.runs.finish("run-42", ENGINEER).status is RunStatus.FINISHED
    with pytest.raises(FailedPrecondition):
        kit.runs.log_metrics("run-42", [Metric("loss", 0.1, "train", 4)])
    with pytest.raises(NotFound):
        kit.runs.get("run-x")
    v1 = register(kit, run_id="run-42", training_request_id="req-1", drift_report_id="drift-3",
                  datasets=new.datasets, code_version="abc123")
    kit.registry.apply_evaluation(verdict(v1.key, True, "report-5"))
    kit.registry.index_predictions([PredictionEntry("p-1", AUTO, AUTO, 1, utcnow(), CHAMPION)])
    assert kit.registry.index_predictions([PredictionEntry("p-1", AUTO, AUTO, 1, utcnow(), CHAMPION),
                                           PredictionEntry("p-2", AUTO, AUTO, 1, None, "")]) == 1
    lineage = kit.registry.lineage_of_prediction("p-1")
    assert lineage.prediction is not None and lineage.prediction.alias == CHAMPION
    assert (lineage.version.version, lineage.version.drift_report_id) == (1, "drift-3")
    assert lineage.run is not None and lineage.run.code_version == "abc123" and lineage.run.seed == 7
    assert lineage.run.environment["torch"] == "2.9.1"
    assert lineage.run.datasets == new.datasets and lineage.run.features[0].name == "salary"
    losses = [(m.step, m.value) for m in lineage.run.metrics if m.name == "loss"]
    assert losses == [(1, 1.0), (2, 0.5), (3, 0.4)]
    assert [e.report_id for e in lineage.evaluations] == ["report-5"]
    assert {r.action for r in lineage.audit} >= {"model_version.registered", "model_version.evaluated",
                                                 "alias.promote"}
    with pytest.raises(NotFound):
        kit.registry.lineage_of_prediction("p-404")


def test_concurrent_writers_never_share_a_version_or_break_the_chain(kit: Kit) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            register(kit)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(v.version for v in kit.registry.list_versions(AUTO)) == [1, 2, 3, 4, 5, 6]
    assert kit.registry.verify_audit().valid


def aif_audit_verify(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "libs.cli", "audit", "verify", "--database-url", url],
                          capture_output=True, text=True, timeout=60)


def test_audit_chain_verifies_and_a_tampered_row_is_found(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    kit.registry.apply_evaluation(verdict(v1.key, True))
    kit.registry.apply_evaluation(verdict(v2.key, False))
    ok = aif_audit_verify(kit.url)
    assert ok.returncode == 0, ok.stderr
    assert "audit chain OK" in ok.stdout
    target = kit.registry.list_audit(AUTO)[3]
    postgres = kit.store.dialect == "postgresql"
    # The database itself refuses to change the log...
    with pytest.raises(Exception, match="append-only"), kit.store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET reason = 'rewritten' WHERE sequence = :s"), {"s": target.sequence})
    # ...so a tamperer has to switch the guard off first; the hash chain still finds the row.
    with kit.store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only" if postgres
                          else "DROP TRIGGER audit_events_no_update"))
        conn.execute(text("UPDATE audit_events SET reason = 'rewritten' WHERE sequence = :s"), {"s": target.sequence})
    bad = aif_audit_verify(kit.url)
    assert bad.returncode == 1
    assert f"sequence {target.sequence}" in bad.stdout and target.event_id in bad.stdout
    report = kit.registry.verify_audit()
    assert (report.valid, report.first_invalid_sequence, report.first_invalid_event_id) == (
        False, target.sequence, target.event_id)


def test_a_tampered_artifact_is_refused_on_read_and_export(kit: Kit) -> None:
    v1 = register(kit)
    blob = next((kit.artifacts.root / "sha256").rglob(v1.artifact_sha256))
    blob.write_bytes(b"tampered" + MODEL[8:])
    with pytest.raises(ArtifactCorrupted):
        kit.artifacts.read(v1.artifact_sha256)
    (kit.repo / AUTO / "1" / "model.pt").unlink()
    with pytest.raises(ArtifactCorrupted):
        kit.registry.export(v1.key, ENGINEER)
    assert not (kit.repo / AUTO / "1" / "model.pt").exists()


# ---------------------------------------------------------------- the service on the real broker

@dataclass
class Running:
    stub: pb_grpc.RegistryServiceStub
    auth: DevAuth
    topics: dict[str, str]
    publisher: EventPublisher
    settings: RegistrySettings

    def md(self, subject: str, *roles: str, use_case: str = "*") -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.auth.issue(subject, {use_case: list(roles)})}")]


@pytest.fixture
async def service(kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path) -> AsyncIterator[Running]:
    topics = {name: await new_topic(f"registry-{name}") for name in
              ("evaluated", "rollback", "predictions", "promoted", "dlq")}
    auth = DevAuth(tmp_path / "auth").ensure()
    settings = RegistrySettings(
        grpc_port=0, metrics_port=0, kafka_bootstrap=kafka.bootstrap_servers, auth_dir=auth.directory,
        database_url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_root=tmp_path / "artifacts",
        usecases_dir=write_usecases(tmp_path / "usecases"), triton_model_repository=tmp_path / "triton",
        export_root=tmp_path / "exports",
        consumer_group=f"registry-{uuid.uuid4().hex[:8]}", evaluated_topic=topics["evaluated"],
        rollback_topic=topics["rollback"], predictions_topic=topics["predictions"],
        promoted_topic=topics["promoted"], dead_letter_topic=topics["dlq"])
    # JWT authentication without the permission table: the registry's own role checks are under test.
    verifier = TokenVerifier(load_public_key(auth.public_key), issuer=auth.issuer, audience=auth.audience,
                             revoked=RevocationList(auth.directory / REVOKED_FILE))
    svc = await build(settings, setup_telemetry("registry-test"),
                      security=ServerSecurity(authenticator=JwtAuthenticator(verifier)))
    port = await svc.server.start()
    publisher = EventPublisher(kafka.bootstrap_servers, producer="registry-test")
    await publisher.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Running(pb_grpc.RegistryServiceStub(channel), auth, topics, publisher, settings)
    finally:
        await channel.close()
        await publisher.stop()
        await svc.server.stop()
        await svc.close()


async def alias_events(running: Running, count: int, timeout: float = 30) -> list[registry_events.AliasChanged]:
    """The first ``count`` AliasChanged events on the promoted topic (read from the start)."""
    consumer = AIOKafkaConsumer(running.topics["promoted"], bootstrap_servers=running.settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[registry_events.AliasChanged] = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < count:
                record = await consumer.getone()
                headers = dict(record.headers)
                assert headers["aif-event-type"] == b"aifactory.registry.v1.AliasChanged"
                event = registry_events.AliasChanged.FromString(record.value)
                assert headers["aif-event-id"].decode() == event.audit_event_id
                out.append(event)
    finally:
        await consumer.stop()
    return out


async def consumed(running: Running, want: dict[str, int]) -> bool:
    """True once the registry's consumer group has committed ``want`` offsets per topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=running.settings.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(running.settings.consumer_group)
    finally:
        await admin.close()
    got = {tp.topic: meta.offset for tp, meta in offsets.items()}
    return all(got.get(running.topics[name], -1) >= n for name, n in want.items())


async def until(check: Any, timeout: float = 30) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.1)


async def grpc_register(running: Running, md: Any, use_case: str = AUTO, **fields: Any) -> pb.ModelVersion:
    response = await running.stub.RegisterModelVersion(pb.RegisterModelVersionRequest(
        use_case=use_case, model_name=fields.pop("model_name", use_case), artifact_content=MODEL,
        reference_profile_content=REFERENCE[use_case], **fields), metadata=md)
    return response.model_version


def evaluated(ref: common_pb2.ModelRef, passed: bool) -> evaluator_events.ModelEvaluated:
    return evaluator_events.ModelEvaluated(
        report_id=f"report-{uuid.uuid4().hex[:8]}", model=ref, passed=passed,
        gates=[evaluator_events.GateResult(gate="metric_floor", metric="auc", value=0.9, threshold=0.75,
                                           passed=passed, comparator=">=")])


async def publish(running: Running, topic: str, event: Message, event_id: str | None = None) -> None:
    await running.publisher.publish(running.topics[topic], event, use_case=AUTO, key=AUTO, event_id=event_id)


async def test_service_acts_on_events_and_publishes_every_alias_change(service: Running) -> None:
    md = service.md("trainer", "ml-engineer")
    run = (await service.stub.CreateRun(pb.CreateRunRequest(use_case=AUTO, code_version="abc", seed=3,
                                                            environment={"torch": "2.9.1"}), metadata=md)).run
    await service.stub.LogRunMetrics(pb.LogRunMetricsRequest(run_id=run.run_id, metrics=[
        common_pb2.Metric(name="loss", value=0.5, split="train", step=1)]), metadata=md)
    await service.stub.FinishRun(pb.FinishRunRequest(run_id=run.run_id), metadata=md)
    v1 = await grpc_register(service, md, run_id=run.run_id, idempotency_key=run.run_id)
    v2 = await grpc_register(service, md)
    evaluation = evaluated(v1.ref, True)
    await publish(service, "evaluated", evaluation, event_id="evt-1")
    await publish(service, "evaluated", evaluation, event_id="evt-1")  # redelivered: no second effect
    await publish(service, "evaluated", evaluated(v2.ref, True), event_id="evt-2")
    events = await alias_events(service, 3)
    assert [(e.alias, e.old_version, e.new_version, e.kind) for e in events] == [
        (CHAMPION, 0, 1, registry_events.ALIAS_CHANGE_KIND_PROMOTE),
        (PREVIOUS, 0, 1, registry_events.ALIAS_CHANGE_KIND_PROMOTE),
        (CHAMPION, 1, 2, registry_events.ALIAS_CHANGE_KIND_PROMOTE)]
    assert events[0].actor.subject == "registry" and events[0].evidence_ids == [evaluation.report_id]

    alarm = monitor_events.RollbackRequested(request_id="alarm-1", use_case=AUTO, model=v2.ref,
                                             reason="live auc fell", evidence_ids=["drift-1"])
    await publish(service, "rollback", alarm)
    await publish(service, "rollback", alarm)  # the same alarm, a new event id: v2 is no longer champion
    events = await alias_events(service, 5)
    assert [(e.alias, e.old_version, e.new_version, e.kind) for e in events[3:]] == [
        (CHAMPION, 2, 1, registry_events.ALIAS_CHANGE_KIND_ROLLBACK),
        (PREVIOUS, 1, 0, registry_events.ALIAS_CHANGE_KIND_ROLLBACK)]
    champ = await service.stub.GetAlias(pb.GetAliasRequest(use_case=AUTO, alias=CHAMPION), metadata=md)
    assert champ.alias.version == 1

    await service.publisher.send_raw(service.topics["predictions"], b"\xff not protobuf",
                                     headers=[("aif-event-id", b"x1")])
    await publish(service, "predictions", gateway_events.PredictionLogged(
        prediction_id="pred-1", use_case=AUTO, model=v1.ref, alias=CHAMPION, trace_id="ab" * 16))

    async def lineage() -> pb.GetLineageResponse | None:
        try:
            return await service.stub.GetLineage(pb.GetLineageRequest(prediction_id="pred-1"), metadata=md)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            return None

    found = await until(lineage)
    dead = AIOKafkaConsumer(service.topics["dlq"], bootstrap_servers=service.settings.kafka_bootstrap,
                            auto_offset_reset="earliest")
    await dead.start()
    try:
        record = await asyncio.wait_for(dead.getone(), 30)
    finally:
        await dead.stop()
    assert dict(record.headers)["aif-dlq-reason"] == b"missing header aif-event-type"
    assert found.model_version.ref.version == 1 and found.served_alias == CHAMPION
    assert found.run.run_id == run.run_id and found.run.environment["torch"] == "2.9.1"
    assert found.run.status == pb.RUN_STATUS_FINISHED and found.run.metrics[0].name == "loss"
    assert [e.report_id for e in found.evaluations] == [evaluation.report_id]
    # Every event handled and committed, the repeated ones included, before counting effects.
    await until(lambda: consumed(service, {"evaluated": 3, "rollback": 2}))
    audit = (await service.stub.ListAuditEvents(pb.ListAuditEventsRequest(use_case=AUTO), metadata=md)).audit_events
    assert audit[0].actor.subject == "trainer" and audit[0].action == "run.created"
    actions = [e.action for e in audit]
    # Redelivered verdict and repeated alarm: each effect happened once.
    assert (actions.count("model_version.evaluated"), actions.count("alias.rollback")) == (2, 2)
    assert (await service.stub.VerifyAuditChain(pb.VerifyAuditChainRequest(), metadata=md)).valid
    stats = await service.stub.GetReferenceStats(pb.GetReferenceStatsRequest(
        ref=common_pb2.ModelRef(use_case=AUTO, model_name=AUTO), alias=CHAMPION), metadata=md)
    assert stats.ref.version == 1 and json.loads(stats.profile_json)["inputs"] == USECASES[AUTO].model_inputs()


async def test_service_errors_and_artifacts(service: Running) -> None:
    md = service.md("trainer", "ml-engineer")

    async def code(call: Any) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        return info.value.code(), info.value.details() or ""

    assert (await code(service.stub.GetModelVersion(pb.GetModelVersionRequest(
        ref=common_pb2.ModelRef(use_case=AUTO, model_name=AUTO, version=9)), metadata=md)))[0] \
        == grpc.StatusCode.NOT_FOUND
    status, details = await code(service.stub.GetModelVersion(pb.GetModelVersionRequest(
        ref=common_pb2.ModelRef(use_case=AUTO, model_name=AUTO)), metadata=md))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("ref.version")
    status, details = await code(service.stub.RegisterModelVersion(pb.RegisterModelVersionRequest(
        use_case=AUTO, artifact_content=b"junk"), metadata=md))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("artifact_content")
    assert (await code(service.stub.GetModelVersion(pb.GetModelVersionRequest(), metadata=[])))[0] \
        == grpc.StatusCode.UNAUTHENTICATED

    async def chunks() -> AsyncIterator[pb.UploadArtifactRequest]:
        yield pb.UploadArtifactRequest(chunk=MODEL[:1000], use_case=AUTO)
        yield pb.UploadArtifactRequest(chunk=MODEL[1000:])

    uploaded = await service.stub.UploadArtifact(chunks(), metadata=md)
    v1 = await service.stub.RegisterModelVersion(pb.RegisterModelVersionRequest(
        use_case=AUTO, artifact_sha256=uploaded.sha256), metadata=md)
    assert v1.model_version.artifact_sha256 == uploaded.sha256
    v2 = await grpc_register(service, md)
    status, details = await code(service.stub.SetAlias(pb.SetAliasRequest(
        use_case=AUTO, alias="staging", version=2, expected_version=1), metadata=md))
    assert status == grpc.StatusCode.FAILED_PRECONDITION and "compare-and-set" in details
    parts = [p.chunk async for p in service.stub.DownloadArtifact(
        pb.DownloadArtifactRequest(sha256=uploaded.sha256), metadata=md)]
    assert b"".join(parts) == MODEL
    status, details = await code(service.stub.ExportModelVersion(pb.ExportModelVersionRequest(
        ref=v2.ref, destination_uri="/etc"), metadata=md))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("destination_uri")
    bundle = service.settings.export_root / "bundle"
    exported = await service.stub.ExportModelVersion(pb.ExportModelVersionRequest(
        ref=v2.ref, destination_uri=bundle.as_uri()), metadata=md)
    assert (exported.triton_model_name, exported.uri) == (AUTO, (bundle / AUTO / "2").as_uri())
    lineage = json.loads((bundle / AUTO / "2" / "lineage.json").read_text())
    assert lineage["model_version"]["ref"]["version"] == "2"
    assert [e["action"] for e in lineage["audit_events"]][:2] == ["model_version.registered",
                                                                "model_version.exported"]
    blob = next((service.settings.artifact_root / "sha256").rglob(uploaded.sha256))
    blob.write_bytes(b"tampered")
    status, details = await code(_drain(service.stub.DownloadArtifact(
        pb.DownloadArtifactRequest(sha256=uploaded.sha256), metadata=md)))
    assert status == grpc.StatusCode.DATA_LOSS and "corrupted" in details


async def test_outbox_publishes_changes_committed_by_another_process(service: Running) -> None:
    """A change committed without a running relay (a crash before publishing) still goes out."""
    store = open_store(service.settings.database_url)
    artifacts = ArtifactStore(service.settings.artifact_root)
    other = Registry(store, artifacts, USECASES, None, clock=utcnow)  # its alias changes kick no relay
    try:
        v1 = other.register_version(NewVersion(AUTO, AUTO), ENGINEER, artifact=MODEL)
        await asyncio.to_thread(other.apply_evaluation, verdict(v1.key, True))
    finally:
        store.close()
    (event,) = await alias_events(service, 1)
    assert (event.alias, event.new_version, event.kind) == (CHAMPION, 1, registry_events.ALIAS_CHANGE_KIND_PROMOTE)


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def test_service_approval_roles(service: Running) -> None:
    engineer = service.md("eve", "ml-engineer")
    approver = service.md("ann", "approver", use_case=GATED)
    v1 = await grpc_register(service, engineer, GATED)
    recorded = await service.stub.RecordEvaluation(pb.RecordEvaluationRequest(
        evaluation=evaluated(v1.ref, True)), metadata=engineer)
    assert recorded.recorded and not recorded.promoted
    assert recorded.model_version.status == pb.MODEL_VERSION_STATUS_PENDING_APPROVAL
    approve = pb.ApproveModelVersionRequest(ref=v1.ref, comment="ok", decision=pb.APPROVAL_DECISION_APPROVE)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await service.stub.ApproveModelVersion(approve, metadata=engineer)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED  # the reason is logged, not told
    approved = await service.stub.ApproveModelVersion(approve, metadata=approver)
    assert approved.model_version.status == pb.MODEL_VERSION_STATUS_APPROVED
    assert CHAMPION in approved.model_version.aliases
    events = await alias_events(service, 1)
    assert (events[0].alias, events[0].new_version, events[0].actor.subject) == (CHAMPION, 1, "ann")
    assert list(events[0].actor.roles) == ["approver"]


# ---------------------------------------------------------------- Triton

@pytest.fixture(scope="module")
def triton() -> Iterator[infra.TritonHandle]:
    handle = infra.ensure_triton()
    yield handle
    handle.stop()


@pytest.mark.timeout(240)
def test_exported_version_loads_and_infers_in_triton(triton: infra.TritonHandle, tmp_path: Path) -> None:
    import shutil

    import torch
    import tritonclient.grpc as grpcclient

    store = open_store(f"sqlite:///{tmp_path / 'registry.db'}")
    artifacts = ArtifactStore(tmp_path / "artifacts")
    registry = Registry(store, artifacts, USECASES, TritonExporter(triton.model_repository, artifacts),
                        clock=utcnow)
    name = f"registry_test_{uuid.uuid4().hex[:8]}"
    content = torchscript_model(USECASES[AUTO], seed=11)
    version = registry.register_version(NewVersion(AUTO, name), ENGINEER, artifact=content)
    result = registry.export(version.key, ENGINEER)
    assert result.version_dir == triton.model_repository / name / "1"
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        client.load_model(name)
        assert client.is_model_ready(name, "1")
        config = client.get_model_config(name).config
        assert json.loads(config.parameters["input_names"].string_value) == USECASES[AUTO].model_inputs()
        rng = np.random.default_rng(0)
        module = torch.jit.load(io.BytesIO(content)).eval()
        for rows in (1, 7):
            x = (rng.random((rows, len(USECASES[AUTO].model_inputs()))) * 1000).astype(np.float32)
            inp = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            out = client.infer(name, [inp], outputs=[grpcclient.InferRequestedOutput("OUTPUT")]).as_numpy("OUTPUT")
            with torch.inference_mode():
                want = module(torch.from_numpy(x)).numpy()
            assert out.shape == (rows, 2)
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    finally:
        try:
            client.unload_model(name)
        finally:
            client.close()
            store.close()
            shutil.rmtree(triton.model_repository / name, ignore_errors=True)
