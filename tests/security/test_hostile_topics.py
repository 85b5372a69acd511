"""Every topic every service consumes, fed hostile messages and then one valid event.

Per topic: undecodable payloads (several kinds), events of the wrong type, missing and
broken headers, a payload just under the broker's limit (and one past it, which the
broker must refuse), a flood of bad messages, then one valid event. Each test asserts:
- every bad message is dead-lettered with a reason (libs.bus: header aif-dlq-reason;
  ingestion: a RecordRejected naming its source offset, with violations);
- the consumer keeps running: the valid event, sent last, is handled (its offset
  committed) and its effect happens; it is never dead-lettered.

Services run in this process on their real consumers and the real broker, each topic and
consumer group named for the test; the feature store (a faust app) runs as a process.
The trainer and evaluator get the in-memory feature store and registry of
tests/lifecycle_fakes.py, as in their integration tests (their ports are not under test).
AIF_HOSTILE_FLOOD sets the flood per topic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from pydantic import SecretStr

from aif.datagen import LoanStream, SegmentStream
from aif.stack import Stack
from aif.stack.catalogue import new_topic as new_catalogue_topic
from aif.stack.catalogue import seed_catalogue_sync
from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.ingestion.v1 import events_pb2 as ingestion_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from aifactory.trainer.v1 import events_pb2 as trainer_events
from aifactory.trainer.v1 import trainer_service_pb2 as tr_pb
from aifactory.trainer.v1 import trainer_service_pb2_grpc as tr_grpc
from libs.auth import DevAuth
from libs.bus import EventPublisher
from libs.lifecycle.registry import ModelKey
from libs.runtime import Service, start_service
from libs.usecase import DEFAULT_DIR, load_default
from tests.lifecycle_fakes import FakeOwners, FakeRegistry, FakeTrainingData
from tests.security.conftest import record
from tests.security.hostile import (
    Battery,
    Letter,
    check_letters,
    committed,
    create_topics,
    produce,
    raw_battery,
    read_until,
    typed_battery,
    until,
)
from tests.unit.featurestore.helpers import feedback as feedback_event
from tests.unit.featurestore.helpers import from_example
from tests.unit.registry.helpers import AUTO, reference_doc, torchscript_model, usecases, write_usecases

pytestmark = [pytest.mark.integration]

FLOOD = int(os.environ.get("AIF_HOSTILE_FLOOD", "300"))
RAW_FLOOD = 4 * FLOOD
UC = "loan_approval"
EFFECT_TIMEOUT = 90.0


def names(*topics: str) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {t: f"hostile.{t}.{run}" for t in topics}


def loan_record() -> dict[str, Any]:
    example = next(iter(LoanStream(seed=99, start=datetime.now(UTC) - timedelta(hours=1))))
    return example.record


async def dead_letters_for(
    bootstrap: str, dlq: str, batteries: list[Battery], timeout: float = 60
) -> list[Letter]:
    wanted = {m.value for b in batteries for m in b.bad}

    def done(letters: list[Letter]) -> bool:
        return wanted <= {letter.value for letter in letters}

    return await read_until(bootstrap, dlq, done, timeout)


async def handled(bootstrap: str, group: str, battery: Battery) -> None:
    """The consumer group has committed past the valid event (it ran through everything)."""

    async def past() -> bool:
        return await committed(bootstrap, group, battery.topic) > battery.valid.offset

    await until(
        past, EFFECT_TIMEOUT, f"{group} to commit past offset {battery.valid.offset} of {battery.topic}"
    )


def tally(*batteries: Battery) -> int:
    n = sum(b.tried for b in batteries)
    record("hostile_topic_messages", n)
    return n


async def started(settings: Any, build: Any, **deps: Any) -> tuple[Service, int]:
    """The service in this process, built with the shipped specs (or ``usecases``) instead of
    following the catalogue."""
    service, _ = await start_service(
        settings, functools.partial(build, **{"usecases": load_default(), **deps})
    )
    return service, await service.server.start()


async def stopped(service: Service) -> None:
    await service.server.stop()
    await service.close()


@pytest.fixture
def auth(tmp_path: Path) -> DevAuth:
    return DevAuth(tmp_path / "auth").ensure()


def common(kafka: Any, auth: DevAuth) -> dict[str, Any]:
    return {
        "grpc_port": 0,
        "metrics_port": 0,
        "kafka_bootstrap": kafka.bootstrap_servers,
        "auth_dir": auth.directory,
        "privacy_salt": SecretStr(auth.env()["AIF_PRIVACY_SALT"]),
    }


# -- ingestion: the raw topics --------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_ingestion_raw_topics(kafka, auth: DevAuth, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from services.ingestion.app import build
    from services.ingestion.settings import IngestionSettings

    run = uuid.uuid4().hex[:8]
    t = names("records", "dlq", "quality")
    settings = IngestionSettings(
        **common(kafka, auth),
        data_dir=tmp_path / "raw",
        consumer_group=f"hostile-ingestion-{run}",
        instance_id=f"hostile-{run}",
        raw_topic_pattern=f"hostile.{run}.{{use_case}}.raw",
        records_topic=t["records"],
        dead_letter_topic=t["dlq"],
        quality_topic=t["quality"],
        topic_partitions=1,
        max_payload_bytes=256 * 1024,
    )
    segment = next(iter(SegmentStream(seed=5, start=datetime.now(UTC) - timedelta(hours=1)))).record
    batteries = [
        raw_battery(
            settings.raw_topic(UC), loan_record(), flood=RAW_FLOOD, max_payload=settings.max_payload_bytes
        ),
        raw_battery(
            settings.raw_topic("image_segments"),
            segment,
            flood=RAW_FLOOD,
            max_payload=settings.max_payload_bytes,
        ),
    ]
    await create_topics(kafka.bootstrap_servers, [b.topic for b in batteries])
    service, _ = await started(settings, build)
    try:
        await produce(kafka.bootstrap_servers, batteries)
        valid_ids = {json.loads(b.valid.value)["record_id"] for b in batteries}

        def accepted_all(letters: list[Letter]) -> bool:
            ids = {ingestion_events.RecordAccepted.FromString(x.value).record.record_id for x in letters}
            return valid_ids <= ids

        accepted = await read_until(kafka.bootstrap_servers, t["records"], accepted_all, EFFECT_TIMEOUT)
        assert accepted_all(accepted), "a valid record sent after the hostile ones was not ingested"
        assert len(accepted) == len(valid_ids), "only the valid records are accepted"

        bad = {(b.topic, m.offset): m.kind for b in batteries for m in b.bad}

        def rejected_all(letters: list[Letter]) -> bool:
            return len(letters) >= len(bad)

        letters = await read_until(kafka.bootstrap_servers, t["dlq"], rejected_all, 60)
        seen = {}
        for letter in letters:
            event = ingestion_events.RecordRejected.FromString(letter.value)
            assert event.violations and letter.headers.get("aif-dlq-reason"), event
            seen[(event.source_topic, event.source_offset)] = event
        missing = {kind for key, kind in bad.items() if key not in seen}
        assert not missing, f"not dead-lettered: {sorted(missing)}"
        assert all(key in bad for key in seen), "a valid record was dead-lettered"
        big = next(e for k, e in seen.items() if bad[k] == "just under the broker's limit")
        assert big.original_truncated and big.violations[0].code == "too_large"
        assert (
            await committed(kafka.bootstrap_servers, settings.consumer_group, batteries[0].topic)
            > batteries[0].valid.offset
        )
    finally:
        await stopped(service)
    print(f"ingestion: {tally(*batteries)} messages on {len(batteries)} raw topics")


# -- trainer: training.requested, drift.detected ------------------------------------------------


def fast_retraining_specs(tmp_path: Path) -> Path:
    folder = tmp_path / "usecases"
    folder.mkdir()
    for spec in DEFAULT_DIR.glob("*.yaml"):
        text = spec.read_text().replace(
            "retraining: {debounce: 10s, cooldown: 60s, max_per_day: 20}",
            "retraining: {debounce: 1s, cooldown: 0s, max_per_day: 20}",
        )
        (folder / spec.name).write_text(text)
    return folder


@pytest.mark.timeout(180)
async def test_trainer_topics(kafka, auth: DevAuth, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from services.trainer.app import build
    from services.trainer.settings import TrainerSettings

    t = names("requested", "drift", "trained", "dlq")
    group = f"hostile-trainer-{uuid.uuid4().hex[:8]}"
    settings = TrainerSettings(
        **common(kafka, auth),
        database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        consumer_group=group,
        training_requested_topic=t["requested"],
        drift_detected_topic=t["drift"],
        model_trained_topic=t["trained"],
        dead_letter_topic=t["dlq"],
        dependency_attempts=1,
        dependency_backoff_s=0.05,
    )
    request_id = f"hostile-{uuid.uuid4().hex[:8]}"
    report_id = f"drift-report-{uuid.uuid4().hex[:8]}"
    requested = trainer_events.TrainingRequested(
        request_id=request_id, use_case=UC, reason=trainer_events.TRAINING_REASON_MANUAL
    )
    # The monitor holds the valid drift report (tests/security/test_attack_events.py: forged ones).
    owners = FakeOwners()
    drift = owners.confirm_drift(
        monitor_events.DriftDetected(
            report_id=report_id, use_case=UC, model=common_pb2.ModelRef(use_case=UC, model_name=UC, version=1)
        )
    )
    batteries = [
        typed_battery(
            t["requested"], trainer_events.TrainingRequested, requested, drift, use_case=UC, flood=FLOOD
        ),
        # An empty DriftDetected names no report the monitor holds: dropped unconfirmed (not
        # checked here: tests/security/test_attack_events.py counts those).
        typed_battery(
            t["drift"],
            monitor_events.DriftDetected,
            drift,
            requested,
            use_case=UC,
            flood=FLOOD,
            empty_rejected=False,
        ),
    ]
    await create_topics(kafka.bootstrap_servers, t.values())
    # No training data: each job fails at once, which is enough to show it was taken.
    service, port = await started(
        settings,
        build,
        data=FakeTrainingData({}),
        registry=FakeRegistry(),
        usecases=load_default(fast_retraining_specs(tmp_path)),
        monitor=owners,
    )
    try:
        # The valid request is the trainer's record of one it accepted over its API (another is
        # forged: tests/security/test_attack_events.py), so it is submitted there first.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await tr_grpc.TrainerServiceStub(channel).SubmitTraining(
                tr_pb.SubmitTrainingRequest(request_id=request_id, use_case=UC), metadata=auth.metadata()
            )
        await produce(kafka.bootstrap_servers, batteries)
        for battery in batteries:
            await handled(kafka.bootstrap_servers, group, battery)
        check_letters_all(batteries, await dead_letters_for(kafka.bootstrap_servers, t["dlq"], batteries))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = tr_grpc.TrainerServiceStub(channel)

            async def jobs() -> list[tr_pb.TrainingJob]:
                reply = await stub.ListTrainingJobs(
                    tr_pb.ListTrainingJobsRequest(use_case=UC, page_size=100), metadata=auth.metadata()
                )
                return list(reply.jobs)

            async def both() -> bool:
                found = await jobs()
                return any(j.job_id == request_id for j in found) and any(
                    j.drift_report_id == report_id for j in found
                )

            await until(
                both, EFFECT_TIMEOUT, "a job for the valid request and one for the valid drift report"
            )
            # The two valid events, and nothing else.
            assert len(await jobs()) <= 3, [j.job_id for j in await jobs()]
    finally:
        await stopped(service)
    print(f"trainer: {tally(*batteries)} messages on 2 topics")


def check_letters_all(batteries: list[Battery], letters: list[Letter]) -> None:
    for battery in batteries:
        check_letters(battery, letters)


# -- evaluator: model.trained --------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_evaluator_topic(kafka, auth: DevAuth, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from services.evaluator.app import build
    from services.evaluator.settings import EvaluatorSettings
    from tests.training_sets import loan_frame, usecase

    t = names("trained", "evaluated", "dlq")
    group = f"hostile-evaluator-{uuid.uuid4().hex[:8]}"
    settings = EvaluatorSettings(
        **common(kafka, auth),
        database_url=f"sqlite:///{tmp_path / 'reports.db'}",
        consumer_group=group,
        model_trained_topic=t["trained"],
        model_evaluated_topic=t["evaluated"],
        dead_letter_topic=t["dlq"],
    )
    registry = FakeRegistry()
    key = ModelKey(UC, UC, 1)
    registry.add_version(key, torchscript_model(usecase(UC)))
    data = FakeTrainingData({UC: loan_frame(2000, interval=timedelta(seconds=4))})
    trained = trainer_events.ModelTrained(model=key.to_proto(), request_id=f"hostile-{uuid.uuid4().hex[:8]}")
    wrong = trainer_events.TrainingRequested(request_id="x", use_case=UC)
    battery = typed_battery(
        t["trained"], trainer_events.ModelTrained, trained, wrong, use_case=UC, flood=FLOOD
    )
    await create_topics(kafka.bootstrap_servers, t.values())
    service, _ = await started(settings, build, data=data, registry=registry)
    try:
        await produce(kafka.bootstrap_servers, [battery])
        await handled(kafka.bootstrap_servers, group, battery)
        check_letters(battery, await dead_letters_for(kafka.bootstrap_servers, t["dlq"], [battery]))
        verdicts = await read_until(
            kafka.bootstrap_servers, t["evaluated"], lambda x: len(x) >= 1, EFFECT_TIMEOUT
        )
        assert len(verdicts) == 1, "the valid ModelTrained was evaluated, and only it"
        assert evaluator_events.ModelEvaluated.FromString(verdicts[0].value).model.version == 1
    finally:
        await stopped(service)
    print(f"evaluator: {tally(battery)} messages")


# -- registry: model.evaluated, rollback.requested, predictions ----------------------------------


@pytest.mark.timeout(240)
async def test_registry_topics(kafka, auth: DevAuth, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from services.registry.app import build
    from services.registry.settings import RegistrySettings

    t = names("evaluated", "rollback", "predictions", "promoted", "dlq")
    group = f"hostile-registry-{uuid.uuid4().hex[:8]}"
    settings = RegistrySettings(
        **common(kafka, auth),
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        artifact_root=tmp_path / "artifacts",
        export_root=tmp_path / "exports",
        consumer_group=group,
        evaluated_topic=t["evaluated"],
        rollback_topic=t["rollback"],
        predictions_topic=t["predictions"],
        promoted_topic=t["promoted"],
        dead_letter_topic=t["dlq"],
    )
    await create_topics(kafka.bootstrap_servers, t.values())
    owners = FakeOwners()  # the evaluator and the monitor confirm the valid events
    service, port = await started(
        settings,
        build,
        usecases=load_default(write_usecases(tmp_path / "usecases")),
        evaluations=owners,
        monitor=owners,
    )
    admin = auth.metadata()
    uc = usecases()[AUTO]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = reg_grpc.RegistryServiceStub(channel)
            versions = []
            for seed in (1, 2):
                reply = await stub.RegisterModelVersion(
                    reg_pb.RegisterModelVersionRequest(
                        use_case=AUTO,
                        model_name=AUTO,
                        artifact_content=torchscript_model(uc, seed=seed),
                        reference_profile_content=json.dumps(reference_doc(uc)).encode(),
                    ),
                    metadata=admin,
                )
                versions.append(reply.model_version.ref)

            async def champion() -> int:
                try:
                    reply = await stub.GetAlias(
                        reg_pb.GetAliasRequest(use_case=AUTO, model_name=AUTO, alias="champion"),
                        metadata=admin,
                    )
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.NOT_FOUND:
                        return 0
                    raise
                return reply.alias.version

            # model.evaluated: the valid verdict (v1 passed) makes v1 champion (auto policy).
            verdict = owners.confirm_evaluation(
                evaluator_events.ModelEvaluated(
                    report_id=f"report-{uuid.uuid4().hex[:8]}", model=versions[0], passed=True
                )
            )
            rollback = owners.confirm_rollback(
                monitor_events.RollbackRequested(
                    request_id=f"rb-{uuid.uuid4().hex[:8]}",
                    use_case=AUTO,
                    model=versions[1],
                    alias="champion",
                    reason="hostile test",
                )
            )
            prediction = gateway_events.PredictionLogged(
                prediction_id=f"pred-{uuid.uuid4().hex}", use_case=AUTO, model=versions[0]
            )
            evaluated = typed_battery(
                t["evaluated"], evaluator_events.ModelEvaluated, verdict, rollback, use_case=AUTO, flood=FLOOD
            )
            await produce(kafka.bootstrap_servers, [evaluated])
            await handled(kafka.bootstrap_servers, group, evaluated)
            assert await until(lambda: _equals(champion, 1), EFFECT_TIMEOUT, "v1 to become champion")

            # rollback.requested: v2 passes too and becomes champion; the valid request moves back to v1.
            publisher = EventPublisher(kafka.bootstrap_servers, producer="hostile-setup")
            await publisher.start()
            try:
                await publisher.publish(
                    t["evaluated"],
                    owners.confirm_evaluation(
                        evaluator_events.ModelEvaluated(
                            report_id=f"report-{uuid.uuid4().hex[:8]}", model=versions[1], passed=True
                        )
                    ),
                    use_case=AUTO,
                )
            finally:
                await publisher.stop()
            assert await until(lambda: _equals(champion, 2), EFFECT_TIMEOUT, "v2 to become champion")
            rollbacks = typed_battery(
                t["rollback"], monitor_events.RollbackRequested, rollback, verdict, use_case=AUTO, flood=FLOOD
            )
            predictions = typed_battery(
                t["predictions"],
                gateway_events.PredictionLogged,
                prediction,
                verdict,
                use_case=AUTO,
                flood=FLOOD,
            )
            await produce(kafka.bootstrap_servers, [rollbacks, predictions])
            await handled(kafka.bootstrap_servers, group, rollbacks)
            await handled(kafka.bootstrap_servers, f"{group}.predictions", predictions)
            assert await until(lambda: _equals(champion, 1), EFFECT_TIMEOUT, "the rollback to v1")
            lineage = await stub.GetLineage(
                reg_pb.GetLineageRequest(prediction_id=prediction.prediction_id), metadata=admin
            )
            assert lineage.model_version.ref.version == versions[0].version
            batteries = [evaluated, rollbacks, predictions]
            check_letters_all(batteries, await dead_letters_for(kafka.bootstrap_servers, t["dlq"], batteries))
    finally:
        await stopped(service)
    print(f"registry: {tally(*batteries)} messages on 3 topics")


async def _equals(read: Any, want: Any) -> bool:
    return await read() == want


# -- gateway: model.promoted ----------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_gateway_topic(kafka, auth: DevAuth, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from services.gateway.app import build
    from services.gateway.settings import GatewaySettings

    t = names("promoted", "predictions", "feedback", "dlq")
    settings = GatewaySettings(
        **common(kafka, auth),
        oip_port=-1,
        registry_target="",
        featurestore_target="127.0.0.1:9",
        model_promoted_topic=t["promoted"],
        predictions_topic=t["predictions"],
        feedback_topic=t["feedback"],
        dead_letter_topic=t["dlq"],
        load_timeout_s=5,
        warmup_requests=0,
    )
    changed = registry_events.AliasChanged(
        use_case=UC,
        model_name=UC,
        alias="champion",
        new_version=7,
        audit_event_id=f"audit-{uuid.uuid4().hex[:8]}",
    )
    changed.changed_at.FromDatetime(datetime.now(UTC))
    wrong = gateway_events.FeedbackRecorded(feedback_id="x")
    # An AliasChanged of a use case the gateway does not serve is ignored, not an error.
    battery = typed_battery(
        t["promoted"],
        registry_events.AliasChanged,
        changed,
        wrong,
        use_case=UC,
        flood=FLOOD,
        empty_rejected=False,
    )
    await create_topics(kafka.bootstrap_servers, t.values())
    service, _ = await started(settings, build)
    try:
        await produce(kafka.bootstrap_servers, [battery])
        book = service.book  # type: ignore[attr-defined]

        async def applied() -> bool:
            return book.version(UC, "champion") == 7

        await until(applied, EFFECT_TIMEOUT, "the valid AliasChanged to reach the gateway's alias book")
        check_letters(battery, await dead_letters_for(kafka.bootstrap_servers, t["dlq"], [battery]))
    finally:
        await stopped(service)
    print(f"gateway: {tally(battery)} messages")


# -- monitor: predictions, feedback, model.promoted ----------------------------------------------


@pytest.mark.timeout(180)
async def test_monitor_topics(kafka, auth: DevAuth, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from services.monitor.app import build
    from services.monitor.references import StaticReferences
    from services.monitor.settings import MonitorSettings

    t = names("predictions", "feedback", "promoted", "drift", "rollback", "dlq")
    group = f"hostile-monitor-{uuid.uuid4().hex[:8]}"
    settings = MonitorSettings(
        **common(kafka, auth),
        database_url=f"sqlite:///{tmp_path / 'monitor.db'}",
        registry_target="",
        consumer_group=group,
        predictions_topic=t["predictions"],
        feedback_topic=t["feedback"],
        model_promoted_topic=t["promoted"],
        drift_detected_topic=t["drift"],
        rollback_topic=t["rollback"],
        dead_letter_topic=t["dlq"],
    )
    pid = f"pred-{uuid.uuid4().hex}"
    model = common_pb2.ModelRef(use_case=UC, model_name=UC, version=1)
    prediction = gateway_events.PredictionLogged(
        prediction_id=pid,
        use_case=UC,
        model=model,
        entity_id="a00001",
        alias="champion",
        output=common_pb2.Value(double_value=0.8),
        outputs={"p_0": common_pb2.Value(double_value=0.2), "p_1": common_pb2.Value(double_value=0.8)},
    )
    prediction.timestamp.FromDatetime(datetime.now(UTC))
    outcome = gateway_events.FeedbackRecorded(
        feedback_id=f"fb-{pid}", prediction_id=pid, use_case=UC, outcome=common_pb2.Value(int64_value=1)
    )
    outcome.observed_at.FromDatetime(datetime.now(UTC))
    changed = registry_events.AliasChanged(
        use_case=UC,
        model_name=UC,
        alias="champion",
        new_version=1,
        audit_event_id=f"audit-{uuid.uuid4().hex[:8]}",
    )
    batteries = [
        typed_battery(
            t["predictions"], gateway_events.PredictionLogged, prediction, outcome, use_case=UC, flood=FLOOD
        ),
        # Feedback without a prediction id is the feature store's (labels), ignored here by design.
        typed_battery(
            t["feedback"],
            gateway_events.FeedbackRecorded,
            outcome,
            prediction,
            use_case=UC,
            flood=FLOOD,
            empty_rejected=False,
        ),
        typed_battery(
            t["promoted"],
            registry_events.AliasChanged,
            changed,
            prediction,
            use_case=UC,
            flood=FLOOD,
            empty_rejected=False,
        ),
    ]
    await create_topics(kafka.bootstrap_servers, t.values())
    service, _ = await started(settings, build, references=StaticReferences())
    try:
        await produce(kafka.bootstrap_servers, batteries)
        for battery in batteries:
            await handled(kafka.bootstrap_servers, group, battery)
        check_letters_all(batteries, await dead_letters_for(kafka.bootstrap_servers, t["dlq"], batteries))
    finally:
        await stopped(service)
    print(f"monitor: {tally(*batteries)} messages on 3 topics")


# -- feature store: records, feedback (a faust app: its own process) -------------------------------


@pytest.fixture
def featurestore(kafka, auth: DevAuth, tmp_path: Path) -> Iterator[tuple[Stack, dict[str, str], str]]:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex[:8]
    t = names("records", "feedback", "dlq", "written")
    app_id = f"hostile-fs-{run}"
    env = {
        "AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "AIF_FEATURESTORE_RECORDS_TOPIC": t["records"],
        "AIF_FEATURESTORE_FEEDBACK_TOPIC": t["feedback"],
        "AIF_FEATURESTORE_DEAD_LETTER_TOPIC": t["dlq"],
        "AIF_FEATURESTORE_FEATURES_WRITTEN_TOPIC": t["written"],
        "AIF_FEATURESTORE_APP_ID": app_id,
        "AIF_FEATURESTORE_FEAST_PROJECT": f"h{run}",
        "AIF_FEATURESTORE_PARTITIONS": "1",
        # Alone, with no registry: the shipped specs are seeded on a catalogue of its own.
        "AIF_USECASES_TOPIC": new_catalogue_topic("hostile"),
    }
    stack = Stack(tmp_path / "logs", port_offset=11200, env=env, auth=auth, data_root=tmp_path / "data")
    asyncio.run(create_topics(kafka.bootstrap_servers, t.values()))
    seed_catalogue_sync(kafka.bootstrap_servers, env["AIF_USECASES_TOPIC"])
    try:
        stack.start(["featurestore"], timeout=120)
    except Exception as exc:  # noqa: BLE001 - fail with the service's own words
        log = tmp_path / "logs" / "featurestore.log"
        pytest.fail(
            f"the feature store did not start: {exc} "
            f"{log.read_text(errors='replace')[-600:] if log.exists() else ''}"
        )
    try:
        yield stack, t, app_id
    finally:
        stack.stop()


@pytest.mark.timeout(240)
async def test_featurestore_topics(kafka, featurestore) -> None:  # type: ignore[no-untyped-def]
    stack, t, app_id = featurestore
    example = next(iter(LoanStream(seed=123, start=datetime.now(UTC) - timedelta(hours=2))))
    entity = f"hostile-{uuid.uuid4().hex[:8]}"
    example = dataclasses.replace(
        example, entity_id=entity, record={**example.record, "applicant_id": entity}
    )
    accepted = from_example(UC, example)
    labelled = feedback_event(UC, example)
    batteries = [
        # The feature store reads the payload whatever the aif-* headers say (records are
        # deduplicated by record id): header-less copies of a valid event are tolerated.
        typed_battery(
            t["records"],
            ingestion_events.RecordAccepted,
            accepted,
            labelled,
            use_case=UC,
            flood=FLOOD,
            strict_headers=False,
        ),
        typed_battery(
            t["feedback"],
            gateway_events.FeedbackRecorded,
            labelled,
            accepted,
            use_case=UC,
            flood=FLOOD,
            strict_headers=False,
        ),
    ]
    for battery in batteries:  # keyed by entity, as ingestion and the gateway key them
        for message in [*battery.bad, *battery.tolerated, battery.valid]:
            message.key = f"{UC}/{entity}".encode()
    await produce(kafka.bootstrap_servers, batteries)
    async with grpc.aio.insecure_channel(stack.target("featurestore")) as channel:
        stub = fs_grpc.FeatureStoreServiceStub(channel)

        async def online() -> bool:
            reply = await stub.GetOnlineFeatures(
                fs_pb.GetOnlineFeaturesRequest(use_case=UC, entity_ids=[entity]),
                metadata=stack.metadata(),
                timeout=10,
            )
            return any(row.record_id == example.record_id for row in reply.rows)

        await until(online, EFFECT_TIMEOUT * 1.5, "the valid record's features online")
    for battery in batteries:
        await handled(kafka.bootstrap_servers, app_id, battery)
    check_letters_all(
        batteries, await dead_letters_for(kafka.bootstrap_servers, t["dlq"], batteries, timeout=90)
    )
    assert stack.running["featurestore"].process.poll() is None, "the feature store died"
    print(f"featurestore: {tally(*batteries)} messages on 2 topics")
