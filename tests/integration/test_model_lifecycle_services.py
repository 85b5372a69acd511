"""Trainer and evaluator services in-process on the real broker, with in-memory ports.

The feature store and registry are fakes here (tests/lifecycle_fakes.py); the broker,
the consumers, the gRPC servers and SQLite are real. What it shows:
- a training request (SubmitTraining; its TrainingRequested record on the topic is the
  trainer's own, a no-op) → a trained, registered version → ModelTrained published;
- a drift storm → one training, linked to the first drift report;
- that ModelTrained → the evaluator → ModelEvaluated published (passed), and a worse
  candidate against that champion → ModelEvaluated (failed);
- the gRPC APIs (submit idempotent by request id, job status, list, report by id).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer

from aifactory.evaluator.v1 import evaluator_service_pb2 as ev_pb
from aifactory.evaluator.v1 import evaluator_service_pb2_grpc as ev_grpc
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.trainer.v1 import events_pb2 as trainer_events
from aifactory.trainer.v1 import trainer_service_pb2 as tr_pb
from aifactory.trainer.v1 import trainer_service_pb2_grpc as tr_grpc
from libs.bus import EventPublisher
from libs.lifecycle.registry import ModelKey
from libs.rpc import insecure_channel
from libs.runtime import start_service
from libs.usecase import DEFAULT_DIR, UseCase, parse_usecase
from services.evaluator.app import build as build_evaluator
from services.evaluator.settings import EvaluatorSettings
from services.trainer.app import build as build_trainer
from services.trainer.recipe import TrainConfig
from services.trainer.settings import TrainerSettings
from services.trainer.training import train
from tests.lifecycle_fakes import FakeOwners, FakeRegistry, FakeTrainingData
from tests.training_sets import loan_frame, usecase

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
UC = "loan_approval"


def specs() -> dict[str, UseCase]:
    """The shipped specs with a short debounce and no cooldown, so the test does not wait
    (the services' catalogue: they are built with it instead of following the topic)."""
    out = {}
    for spec in DEFAULT_DIR.glob("*.yaml"):
        text = spec.read_text().replace(
            "retraining: {debounce: 5s, cooldown: 30s, max_per_day: 20}",
            "retraining: {debounce: 1s, cooldown: 0s, max_per_day: 20}",
        )
        uc = parse_usecase(text, str(spec))
        out[uc.name] = uc
    assert out["loan_approval"].retraining.debounce.total_seconds() == 1
    return out


@dataclass(frozen=True)
class Topics:
    requested: str
    drift: str
    trained: str
    evaluated: str
    dlq: str


@pytest.fixture
async def topics(new_topic) -> Topics:  # type: ignore[no-untyped-def]
    return Topics(
        **{name: await new_topic(name) for name in ("requested", "drift", "trained", "evaluated", "dlq")}
    )


@pytest.fixture
async def publisher(kafka) -> AsyncIterator[EventPublisher]:  # type: ignore[no-untyped-def]
    async with EventPublisher(kafka.bootstrap_servers, producer="test") as pub:
        yield pub


async def read(
    bootstrap: str, topic: str, n: int, timeout: float = 120
) -> list[tuple[dict[str, bytes], bytes]]:
    """The first ``n`` records of ``topic`` (headers, value)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[tuple[dict[str, bytes], bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < n:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out += [({k: v for k, v in r.headers}, r.value) for r in records]
    finally:
        await consumer.stop()
    return out[:n]


async def started(settings: Any, build: Any, **deps: Any) -> tuple[Any, int]:
    service, _ = await start_service(settings, functools.partial(build, **{"usecases": specs(), **deps}))
    port = await service.server.start()
    return service, port


async def stop(service: Any) -> None:
    await service.server.stop()
    await service.close()


def trainer_settings(kafka, topics: Topics, tmp_path: Path) -> TrainerSettings:  # type: ignore[no-untyped-def]
    return TrainerSettings(
        grpc_port=0,
        metrics_port=0,
        kafka_bootstrap=kafka.bootstrap_servers,
        auth_mode="off",
        database_url=f"sqlite:///{tmp_path / 'trainer.db'}",
        consumer_group=f"trainer-{uuid.uuid4().hex[:8]}",
        training_requested_topic=topics.requested,
        drift_detected_topic=topics.drift,
        model_trained_topic=topics.trained,
        dead_letter_topic=topics.dlq,
        dependency_backoff_s=0.05,
    )


def evaluator_settings(kafka, topics: Topics, tmp_path: Path) -> EvaluatorSettings:  # type: ignore[no-untyped-def]
    return EvaluatorSettings(
        grpc_port=0,
        metrics_port=0,
        kafka_bootstrap=kafka.bootstrap_servers,
        auth_mode="off",
        database_url=f"sqlite:///{tmp_path / 'evaluator.db'}",
        consumer_group=f"evaluator-{uuid.uuid4().hex[:8]}",
        model_trained_topic=topics.trained,
        model_evaluated_topic=topics.evaluated,
        dead_letter_topic=topics.dlq,
    )


def data() -> FakeTrainingData:
    # 3000 applications 4 s apart (3 h 20 min): the newest hour is the holdout.
    return FakeTrainingData({UC: loan_frame(3000, interval=timedelta(seconds=1))})


async def test_training_request_and_drift_storm_become_model_trained_events(  # type: ignore[no-untyped-def]
    kafka, topics, publisher, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    owners = FakeOwners()  # the monitor confirms each drift report (tests/security: the real one)
    service, port = await started(
        trainer_settings(kafka, topics, tmp_path),
        build_trainer,
        data=data(),
        registry=registry,
        monitor=owners,
    )
    try:
        # Over the API: a TrainingRequested on the topic is only the trainer's record of one
        # (anyone else's is forged: tests/security/test_attack_events.py).
        request = tr_pb.SubmitTrainingRequest(
            request_id=f"req-{uuid.uuid4().hex[:8]}", use_case=UC, seed=7, params={"epochs": "5"}
        )
        async with insecure_channel(f"127.0.0.1:{port}") as channel:
            await tr_grpc.TrainerServiceStub(channel).SubmitTraining(request)
        [(headers, value)] = await read(kafka.bootstrap_servers, topics.trained, 1)
        trained = trainer_events.ModelTrained.FromString(value)
        assert headers["aif-event-type"] == b"aifactory.trainer.v1.ModelTrained"
        assert headers["aif-event-id"] == f"{request.request_id}.trained".encode()
        assert trained.request_id == request.request_id and trained.seed == 7
        assert (trained.model.use_case, trained.model.version) == (UC, 1)
        assert trained.artifact_sha256 == registry.versions[ModelKey(UC, UC, 1)].artifact_sha256
        assert trained.HasField("window") and trained.params["epochs"] == "5"

        async with insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = tr_grpc.TrainerServiceStub(channel)
            job = (await stub.GetTrainingJob(tr_pb.GetTrainingJobRequest(job_id=request.request_id))).job
            assert job.state == tr_pb.TRAINING_JOB_STATE_SUCCEEDED and job.model.version == 1
            assert max(m.step for m in job.metrics) >= 1 and job.params["epochs"] == "5"
            # Submitting the same request id again returns the same job; nothing trains.
            again = (
                await stub.SubmitTraining(
                    tr_pb.SubmitTrainingRequest(use_case=UC, request_id=request.request_id)
                )
            ).job
            assert again.state == tr_pb.TRAINING_JOB_STATE_SUCCEEDED and again.job_id == job.job_id
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.SubmitTraining(tr_pb.SubmitTrainingRequest(use_case="nope"))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND and "use_case" in info.value.details()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetTrainingJob(tr_pb.GetTrainingJobRequest(job_id="missing"))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND

            # An alarm storm from the monitor: five drift reports in a burst, one training.
            for i in range(5):
                await publisher.publish(
                    topics.drift,
                    owners.confirm_drift(
                        monitor_events.DriftDetected(report_id=f"drift-report-{i}", use_case=UC)
                    ),
                    use_case=UC,
                    key=UC,
                )
            records = await read(kafka.bootstrap_servers, topics.trained, 2)
            drift_trained = trainer_events.ModelTrained.FromString(records[1][1])
            assert drift_trained.drift_report_id == "drift-report-0"
            assert drift_trained.reason == trainer_events.TRAINING_REASON_DRIFT
            assert drift_trained.model.version == 2
            listed = (await stub.ListTrainingJobs(tr_pb.ListTrainingJobsRequest(use_case=UC))).jobs
            states = {j.job_id: j.state for j in listed}
            assert states["drift-drift-report-0"] == tr_pb.TRAINING_JOB_STATE_SUCCEEDED
            assert [states[f"drift-drift-report-{i}"] for i in range(1, 5)] == [
                tr_pb.TRAINING_JOB_STATE_SKIPPED
            ] * 4
        # The drift requests are on the training-requests topic too (first one: the request above).
        requested = [
            trainer_events.TrainingRequested.FromString(v)
            for _, v in await read(kafka.bootstrap_servers, topics.requested, 6)
        ]
        assert [r.drift_report_id for r in requested[1:]] == [f"drift-report-{i}" for i in range(5)]
        await asyncio.sleep(1.5)  # nothing else trains
        assert len(registry.versions) == 2
    finally:
        await stop(service)


async def test_model_trained_becomes_model_evaluated_and_a_worse_candidate_fails(  # type: ignore[no-untyped-def]
    kafka, topics, publisher, tmp_path: Path
) -> None:
    registry = FakeRegistry()
    trainer, trainer_port = await started(
        trainer_settings(kafka, topics, tmp_path), build_trainer, data=data(), registry=registry
    )
    evaluator, port = await started(
        evaluator_settings(kafka, topics, tmp_path), build_evaluator, data=data(), registry=registry
    )
    try:
        async with insecure_channel(f"127.0.0.1:{trainer_port}") as channel:
            await tr_grpc.TrainerServiceStub(channel).SubmitTraining(
                tr_pb.SubmitTrainingRequest(request_id=f"req-{uuid.uuid4().hex[:8]}", use_case=UC)
            )
        [(headers, value)] = await read(kafka.bootstrap_servers, topics.evaluated, 1)
        evaluated = evaluator_events.ModelEvaluated.FromString(value)
        assert headers["aif-event-type"] == b"aifactory.evaluator.v1.ModelEvaluated"
        gates = {g.gate: g for g in evaluated.gates}
        assert evaluated.passed, [g.message for g in evaluated.gates]
        assert evaluated.model.version == 1 and not evaluated.HasField("champion")
        assert gates["no_regression"].message.startswith("skipped: no champion")
        assert gates["fairness_gap"].passed and gates["calibration"].passed
        assert registry.evaluations[evaluated.report_id].passed  # stored in the registry

        # v1 becomes champion (the registry's job); a worse v2 is then judged against it.
        registry.aliases[(UC, UC, "champion")] = 1
        uc = usecase(UC)
        frame = loan_frame(3000, interval=timedelta(seconds=1))
        noise = frame.iloc[:2000].copy()
        noise["label"] = np.random.default_rng(1).integers(0, 2, len(noise))
        bad = train(noise, uc, TrainConfig.from_usecase(uc, {"epochs": "3"}), seed=1).artifact
        registry.add_version(ModelKey(UC, UC, 2), bad)
        await publisher.publish(
            topics.trained,
            trainer_events.ModelTrained(model=ModelKey(UC, UC, 2).to_proto(), request_id="manual-bad"),
            use_case=UC,
            key=UC,
        )
        records = await read(kafka.bootstrap_servers, topics.evaluated, 2)
        failed = evaluator_events.ModelEvaluated.FromString(records[1][1])
        gates = {g.gate: g for g in failed.gates}
        assert not failed.passed and failed.champion.version == 1
        assert not gates["no_regression"].passed and not gates["metric_floor"].passed

        async with insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ev_grpc.EvaluatorServiceStub(channel)
            report = (
                await stub.GetEvaluationReport(ev_pb.GetEvaluationReportRequest(report_id=failed.report_id))
            ).report
            assert report.champion.version == 1 and {m.name for m in report.champion_metrics} >= {"auc"}
            on_demand = (
                await stub.Evaluate(ev_pb.EvaluateRequest(model=ModelKey(UC, UC, 1).to_proto()))
            ).report
            assert on_demand.passed and on_demand.champion.version == 1
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Evaluate(ev_pb.EvaluateRequest(model=ModelKey(UC, UC, 0).to_proto()))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await stop(evaluator)
        await stop(trainer)


async def test_aif_train_submits_and_follows_the_job_with_a_progress_bar(  # type: ignore[no-untyped-def]
    kafka, topics, tmp_path: Path, capsys
) -> None:
    import argparse

    from aif.cli import train as train_cli

    service, port = await started(
        trainer_settings(kafka, topics, tmp_path), build_trainer, data=data(), registry=FakeRegistry()
    )
    try:
        args = argparse.Namespace(
            use_case=UC,
            seed=3,
            param=["epochs=4"],
            request_id="cli-test",
            wait=True,
            target=f"127.0.0.1:{port}",
            token=None,
            poll=0.05,
            timeout=120,
        )
        assert await train_cli._run(args, {"epochs": "4"}) == 0
        out, err = capsys.readouterr()
        assert "job cli-test: queued" in out
        assert (
            "job cli-test: succeeded — loan_approval/loan_approval v1 (run run-cli-test); " in out
            and "auc=" in out
        )
        assert "epoch" in err  # the tqdm bar
        bad = argparse.Namespace(**{**vars(args), "use_case": "nope", "request_id": None})
        assert await train_cli._run(bad, {}) == 2
        assert "NOT_FOUND" in capsys.readouterr().err  # an unknown use case
    finally:
        await stop(service)
