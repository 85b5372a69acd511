"""The registry on real parts: the shared core, store and artifact suites on PostgreSQL (the
database artifact store with a multi-chunk blob), the service on the real broker (events in
and out), JWT callers for the approval roles, digests checked on upload and download, and a
serving bundle loaded into the running Triton through its API (its folder left untouched)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
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
from google.protobuf.message import Message

from aif import infra
from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.registry.v1 import registry_service_pb2 as pb
from aifactory.registry.v1 import registry_service_pb2_grpc as pb_grpc
from libs import artifacts
from libs.auth import REVOKED_FILE, DevAuth, JwtAuthenticator, RevocationList, TokenVerifier, load_public_key
from libs.bus import EventPublisher
from libs.rpc import ServerSecurity
from libs.telemetry import setup_telemetry
from libs.usecase import load_default
from services.registry.app import build
from services.registry.artifacts import FileArtifactStore
from services.registry.core import Registry, utcnow
from services.registry.domain import CHAMPION, PREVIOUS, NewVersion
from services.registry.export import TritonExporter
from services.registry.settings import RegistrySettings
from services.registry.store import open_store
from tests.lifecycle_fakes import FakeOwners
from tests.unit.registry import test_artifacts, test_core, test_store
from tests.unit.registry.helpers import AUTO, GATED, torchscript_model, write_usecases
from tests.unit.registry.kit import ENGINEER, USECASES, Kit, model, open_kit, reference, verdict

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MODEL = model()
REFERENCE = {uc: reference(uc) for uc in (AUTO, GATED)}


# ---------------------------------------------------------------- the shared suite, on PostgreSQL


@pytest.fixture(scope="module")
def postgres() -> Iterator[infra.PostgresHandle]:
    handle = infra.ensure_postgres()
    yield handle
    handle.stop()


@pytest.fixture
def database_url(postgres: infra.PostgresHandle) -> Iterator[str]:
    """A PostgreSQL schema of its own per test (tests/unit/registry: a SQLite file)."""
    schema = f"registry_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield (
        postgres.dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        + f"?options=-csearch_path%3D{schema}"
    )
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def kit(database_url: str, tmp_path: Path) -> Iterator[Kit]:
    with open_kit(database_url, tmp_path) as kit:
        yield kit


@pytest.fixture
def blobs(database_url: str) -> Iterator[test_artifacts.Blobs]:
    """The database artifact store on PostgreSQL, in 1 MiB chunks (bytea rows)."""
    sql = open_store(database_url)
    try:
        yield test_artifacts.database_blobs(sql, chunk_bytes=1 << 20)
    finally:
        sql.close()


# Every test of the registry's core, store and artifact suites, collected here too: the
# same assertions on PostgreSQL, with this module's ``database_url``/``blobs`` and mark.
globals().update(
    {
        name: test
        for suite in (test_core, test_store, test_artifacts)
        for name, test in vars(suite).items()
        if name.startswith("test_")
    }
)


# ---------------------------------------------------------------- the service on the real broker


@dataclass
class Running:
    stub: pb_grpc.RegistryServiceStub
    auth: DevAuth
    topics: dict[str, str]
    publisher: EventPublisher
    settings: RegistrySettings
    # The evaluator's and the monitor's read APIs that confirm each event
    # (tests/security/test_attack_events.py: the real services).
    owners: FakeOwners

    def md(self, subject: str, *roles: str, use_case: str = "*") -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.auth.issue(subject, {use_case: list(roles)})}")]


@pytest.fixture
async def service(kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path) -> AsyncIterator[Running]:
    topics = {
        name: await new_topic(f"registry-{name}")
        for name in ("evaluated", "rollback", "predictions", "promoted", "dlq")
    }
    auth = DevAuth(tmp_path / "auth").ensure()
    settings = RegistrySettings(
        grpc_port=0,
        metrics_port=0,
        kafka_bootstrap=kafka.bootstrap_servers,
        auth_dir=auth.directory,
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        artifact_root=tmp_path / "artifacts",
        export_root=tmp_path / "exports",
        consumer_group=f"registry-{uuid.uuid4().hex[:8]}",
        evaluated_topic=topics["evaluated"],
        rollback_topic=topics["rollback"],
        predictions_topic=topics["predictions"],
        promoted_topic=topics["promoted"],
        dead_letter_topic=topics["dlq"],
    )
    # JWT authentication without the permission table: the registry's own role checks are under test.
    verifier = TokenVerifier(
        load_public_key(auth.public_key),
        issuer=auth.issuer,
        audience=auth.audience,
        revoked=RevocationList(auth.directory / REVOKED_FILE),
    )
    owners = FakeOwners()
    svc = await build(
        settings,
        setup_telemetry("registry-test"),
        security=ServerSecurity(authenticator=JwtAuthenticator(verifier)),
        usecases=load_default(write_usecases(tmp_path / "usecases")),
        evaluations=owners,
        monitor=owners,
    )
    port = await svc.server.start()
    publisher = EventPublisher(kafka.bootstrap_servers, producer="registry-test")
    await publisher.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Running(pb_grpc.RegistryServiceStub(channel), auth, topics, publisher, settings, owners)
    finally:
        await channel.close()
        await publisher.stop()
        await svc.server.stop()
        await svc.close()


async def alias_events(
    running: Running, count: int, timeout: float = 30
) -> list[registry_events.AliasChanged]:
    """The first ``count`` AliasChanged events on the promoted topic (read from the start)."""
    consumer = AIOKafkaConsumer(
        running.topics["promoted"],
        bootstrap_servers=running.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
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
    response = await running.stub.RegisterModelVersion(
        pb.RegisterModelVersionRequest(
            use_case=use_case,
            model_name=fields.pop("model_name", use_case),
            artifact_content=MODEL,
            reference_profile_content=REFERENCE[use_case],
            **fields,
        ),
        metadata=md,
    )
    return response.model_version


def evaluated(ref: common_pb2.ModelRef, passed: bool) -> evaluator_events.ModelEvaluated:
    return evaluator_events.ModelEvaluated(
        report_id=f"report-{uuid.uuid4().hex[:8]}",
        model=ref,
        passed=passed,
        gates=[
            evaluator_events.GateResult(
                gate="metric_floor", metric="auc", value=0.9, threshold=0.75, passed=passed, comparator=">="
            )
        ],
    )


async def publish(running: Running, topic: str, event: Message, event_id: str | None = None) -> None:
    await running.publisher.publish(running.topics[topic], event, use_case=AUTO, key=AUTO, event_id=event_id)


async def test_service_acts_on_events_and_publishes_every_alias_change(service: Running) -> None:
    md = service.md("trainer", "ml-engineer")
    run = (
        await service.stub.CreateRun(
            pb.CreateRunRequest(use_case=AUTO, code_version="abc", seed=3, environment={"torch": "2.9.1"}),
            metadata=md,
        )
    ).run
    await service.stub.LogRunMetrics(
        pb.LogRunMetricsRequest(
            run_id=run.run_id, metrics=[common_pb2.Metric(name="loss", value=0.5, split="train", step=1)]
        ),
        metadata=md,
    )
    await service.stub.FinishRun(pb.FinishRunRequest(run_id=run.run_id), metadata=md)
    v1 = await grpc_register(service, md, run_id=run.run_id, idempotency_key=run.run_id)
    v2 = await grpc_register(service, md)
    evaluation = service.owners.confirm_evaluation(evaluated(v1.ref, True))
    await publish(service, "evaluated", evaluation, event_id="evt-1")
    await publish(service, "evaluated", evaluation, event_id="evt-1")  # redelivered: no second effect
    await publish(
        service, "evaluated", service.owners.confirm_evaluation(evaluated(v2.ref, True)), event_id="evt-2"
    )
    events = await alias_events(service, 3)
    assert [(e.alias, e.old_version, e.new_version, e.kind) for e in events] == [
        (CHAMPION, 0, 1, registry_events.ALIAS_CHANGE_KIND_PROMOTE),
        (PREVIOUS, 0, 1, registry_events.ALIAS_CHANGE_KIND_PROMOTE),
        (CHAMPION, 1, 2, registry_events.ALIAS_CHANGE_KIND_PROMOTE),
    ]
    assert events[0].actor.subject == "registry" and events[0].evidence_ids == [evaluation.report_id]

    alarm = service.owners.confirm_rollback(
        monitor_events.RollbackRequested(
            request_id="alarm-1",
            use_case=AUTO,
            model=v2.ref,
            reason="live auc fell",
            evidence_ids=["drift-1"],
        )
    )
    await publish(service, "rollback", alarm)
    await publish(service, "rollback", alarm)  # the same alarm, a new event id: v2 is no longer champion
    events = await alias_events(service, 5)
    assert [(e.alias, e.old_version, e.new_version, e.kind) for e in events[3:]] == [
        (CHAMPION, 2, 1, registry_events.ALIAS_CHANGE_KIND_ROLLBACK),
        (PREVIOUS, 1, 0, registry_events.ALIAS_CHANGE_KIND_ROLLBACK),
    ]
    champ = await service.stub.GetAlias(pb.GetAliasRequest(use_case=AUTO, alias=CHAMPION), metadata=md)
    assert champ.alias.version == 1

    await service.publisher.send_raw(
        service.topics["predictions"], b"\xff not protobuf", headers=[("aif-event-id", b"x1")]
    )
    await publish(
        service,
        "predictions",
        gateway_events.PredictionLogged(
            prediction_id="pred-1", use_case=AUTO, model=v1.ref, alias=CHAMPION, trace_id="ab" * 16
        ),
    )

    async def lineage() -> pb.GetLineageResponse | None:
        try:
            return await service.stub.GetLineage(pb.GetLineageRequest(prediction_id="pred-1"), metadata=md)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            return None

    found = await until(lineage)
    dead = AIOKafkaConsumer(
        service.topics["dlq"],
        bootstrap_servers=service.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
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
    audit = (
        await service.stub.ListAuditEvents(pb.ListAuditEventsRequest(use_case=AUTO), metadata=md)
    ).audit_events
    assert audit[0].actor.subject == "trainer" and audit[0].action == "run.created"
    actions = [e.action for e in audit]
    # Redelivered verdict and repeated alarm: each effect happened once.
    assert (actions.count("model_version.evaluated"), actions.count("alias.rollback")) == (2, 2)
    assert (await service.stub.VerifyAuditChain(pb.VerifyAuditChainRequest(), metadata=md)).valid
    stats = await service.stub.GetReferenceStats(
        pb.GetReferenceStatsRequest(ref=common_pb2.ModelRef(use_case=AUTO, model_name=AUTO), alias=CHAMPION),
        metadata=md,
    )
    assert (
        stats.ref.version == 1 and json.loads(stats.profile_json)["inputs"] == USECASES[AUTO].model_inputs()
    )


async def test_service_errors_and_artifacts(service: Running) -> None:
    md = service.md("trainer", "ml-engineer")

    async def code(call: Any) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        return info.value.code(), info.value.details() or ""

    assert (
        await code(
            service.stub.GetModelVersion(
                pb.GetModelVersionRequest(ref=common_pb2.ModelRef(use_case=AUTO, model_name=AUTO, version=9)),
                metadata=md,
            )
        )
    )[0] == grpc.StatusCode.NOT_FOUND
    status, details = await code(
        service.stub.GetModelVersion(
            pb.GetModelVersionRequest(ref=common_pb2.ModelRef(use_case=AUTO, model_name=AUTO)), metadata=md
        )
    )
    assert status == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("ref.version")
    status, details = await code(
        service.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(use_case=AUTO, artifact_content=b"junk"), metadata=md
        )
    )
    assert status == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("artifact_content")
    assert (await code(service.stub.GetModelVersion(pb.GetModelVersionRequest(), metadata=[])))[
        0
    ] == grpc.StatusCode.UNAUTHENTICATED

    def chunks(expected: str) -> Any:
        async def stream() -> AsyncIterator[pb.UploadArtifactRequest]:
            yield pb.UploadArtifactRequest(chunk=MODEL[:1000], use_case=AUTO, expected_sha256=expected)
            yield pb.UploadArtifactRequest(chunk=MODEL[1000:])

        return stream()

    status, details = await code(service.stub.UploadArtifact(chunks(""), metadata=md))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("expected_sha256")
    # A content that is not what the client hashed (damaged on the way): refused, not stored.
    wrong = hashlib.sha256(b"another model").hexdigest()
    status, details = await code(service.stub.UploadArtifact(chunks(wrong), metadata=md))
    assert status == grpc.StatusCode.DATA_LOSS and wrong in details
    assert not list(service.settings.artifact_root.rglob(hashlib.sha256(MODEL).hexdigest()))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await artifacts.upload(service.stub, MODEL, AUTO, metadata=md, declared=wrong)
    assert refused.value.code() == grpc.StatusCode.DATA_LOSS
    uploaded = await service.stub.UploadArtifact(chunks(hashlib.sha256(MODEL).hexdigest()), metadata=md)
    assert await artifacts.upload(service.stub, MODEL, AUTO, metadata=md) == uploaded.sha256
    v1 = await service.stub.RegisterModelVersion(
        pb.RegisterModelVersionRequest(use_case=AUTO, artifact_sha256=uploaded.sha256), metadata=md
    )
    assert v1.model_version.artifact_sha256 == uploaded.sha256
    v2 = await grpc_register(service, md)
    status, details = await code(
        service.stub.SetAlias(
            pb.SetAliasRequest(use_case=AUTO, alias="staging", version=2, expected_version=1), metadata=md
        )
    )
    assert status == grpc.StatusCode.FAILED_PRECONDITION and "compare-and-set" in details
    parts = [
        p.chunk
        async for p in service.stub.DownloadArtifact(
            pb.DownloadArtifactRequest(sha256=uploaded.sha256), metadata=md
        )
    ]
    assert b"".join(parts) == MODEL
    assert await artifacts.download(service.stub, uploaded.sha256, metadata=md) == MODEL
    # Only an approved version is served or exported: v2 once it passed evaluation, never v1.
    for call in (
        service.stub.GetServingBundle(pb.GetServingBundleRequest(ref=v1.model_version.ref), metadata=md),
        service.stub.ExportModelVersion(pb.ExportModelVersionRequest(ref=v1.model_version.ref), metadata=md),
    ):
        status, details = await code(call)
        assert status == grpc.StatusCode.FAILED_PRECONDITION and "only an approved version" in details
    await service.stub.RecordEvaluation(
        pb.RecordEvaluationRequest(evaluation=service.owners.confirm_evaluation(evaluated(v2.ref, True))),
        metadata=md,
    )
    bundle = await service.stub.GetServingBundle(
        pb.GetServingBundleRequest(ref=v2.ref, instance_kind="gpu"), metadata=md
    )
    assert bundle.triton_model_name == AUTO and json.loads(bundle.config_json)["instance_group"][0][
        "kind"
    ] == ("KIND_GPU")
    for item in bundle.files:
        assert len(await artifacts.download(service.stub, item.sha256, metadata=md)) == item.size_bytes
    status, details = await code(
        service.stub.GetServingBundle(
            pb.GetServingBundleRequest(ref=v2.ref, instance_kind="tpu"), metadata=md
        )
    )
    assert status == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("instance_kind")
    status, details = await code(
        service.stub.ExportModelVersion(
            pb.ExportModelVersionRequest(ref=v2.ref, destination_uri="/etc"), metadata=md
        )
    )
    assert status == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("destination_uri")
    bundle = service.settings.export_root / "bundle"
    exported = await service.stub.ExportModelVersion(
        pb.ExportModelVersionRequest(ref=v2.ref, destination_uri=bundle.as_uri()), metadata=md
    )
    assert (exported.triton_model_name, exported.uri) == (AUTO, (bundle / AUTO / "2").as_uri())
    lineage = json.loads((bundle / AUTO / "2" / "lineage.json").read_text())
    assert lineage["model_version"]["ref"]["version"] == "2"
    decided = ["model_version.registered", "model_version.evaluated", "alias.promote"]
    assert [e["action"] for e in lineage["audit_events"]] == decided
    audited = await service.stub.GetLineage(pb.GetLineageRequest(model=v2.ref), metadata=md)
    assert [e.action for e in audited.audit_events] == [*decided, "model_version.exported"]
    blob = next((service.settings.artifact_root / "sha256").rglob(uploaded.sha256))
    blob.write_bytes(b"tampered")
    status, details = await code(
        _drain(service.stub.DownloadArtifact(pb.DownloadArtifactRequest(sha256=uploaded.sha256), metadata=md))
    )
    assert status == grpc.StatusCode.DATA_LOSS and "corrupted" in details


async def test_outbox_publishes_changes_committed_by_another_process(service: Running) -> None:
    """A change committed without a running relay (a crash before publishing) still goes out."""
    store = open_store(service.settings.database_url)
    blobs = FileArtifactStore(service.settings.artifact_root)
    other = Registry(store, blobs, USECASES, None, clock=utcnow)  # its alias changes kick no relay
    try:
        v1 = other.register_version(NewVersion(AUTO, AUTO), ENGINEER, artifact=MODEL)
        await asyncio.to_thread(other.apply_evaluation, verdict(v1.key, True))
    finally:
        store.close()
    (event,) = await alias_events(service, 1)
    assert (event.alias, event.new_version, event.kind) == (
        CHAMPION,
        1,
        registry_events.ALIAS_CHANGE_KIND_PROMOTE,
    )


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def test_service_approval_roles(service: Running) -> None:
    engineer = service.md("eve", "ml-engineer")
    approver = service.md("ann", "approver", use_case=GATED)
    v1 = await grpc_register(service, engineer, GATED)
    recorded = await service.stub.RecordEvaluation(
        pb.RecordEvaluationRequest(evaluation=evaluated(v1.ref, True)), metadata=engineer
    )
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
def test_a_serving_bundle_loads_into_triton_through_its_api(
    triton: infra.TritonHandle, tmp_path: Path
) -> None:
    """Config and files in Triton's load call: the version serves, and Triton's repository
    folder holds nothing the registry wrote."""
    import torch
    import tritonclient.grpc as grpcclient

    before = sorted(p.relative_to(triton.model_repository) for p in triton.model_repository.rglob("*"))
    store = open_store(f"sqlite:///{tmp_path / 'registry.db'}")
    blobs = FileArtifactStore(tmp_path / "artifacts")
    registry = Registry(store, blobs, USECASES, TritonExporter(tmp_path / "exports", blobs), clock=utcnow)
    name = f"registry_test_{uuid.uuid4().hex[:8]}"
    content = torchscript_model(USECASES[AUTO], seed=11)
    version = registry.register_version(NewVersion(AUTO, name), ENGINEER, artifact=content)
    registry.apply_evaluation(verdict(version.key, True))  # only an approved version is served
    bundle = registry.serving_bundle(version.key)
    files = {f"file:1/{f.path}": blobs.read(f.sha256) for f in bundle.files}
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        client.load_model(name, config=json.dumps(bundle.config), files=files, headers=triton.control_headers)
        assert client.is_model_ready(name, "1")
        config = client.get_model_config(name, headers=triton.control_headers).config
        assert json.loads(config.parameters["input_names"].string_value) == USECASES[AUTO].model_inputs()
        rng = np.random.default_rng(0)
        module = torch.jit.load(io.BytesIO(content)).eval()
        for rows in (1, 7):
            x = (rng.random((rows, len(USECASES[AUTO].model_inputs()))) * 1000).astype(np.float32)
            inp = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            out = client.infer(name, [inp], outputs=[grpcclient.InferRequestedOutput("OUTPUT")]).as_numpy(
                "OUTPUT"
            )
            with torch.inference_mode():
                want = module(torch.from_numpy(x)).numpy()
            assert out.shape == (rows, 2)
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
        after = sorted(p.relative_to(triton.model_repository) for p in triton.model_repository.rglob("*"))
        assert after == before and not (triton.model_repository / name).exists()
        assert not (tmp_path / "exports").exists()
    finally:
        try:
            client.unload_model(name, headers=triton.control_headers)
        finally:
            client.close()
            store.close()
