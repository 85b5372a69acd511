"""The ports' gRPC adapters against real servers.

- ``GrpcRegistry`` against the registry service in-process (SQLite, its own artifact
  store): runs, registration with artifact and reference, download with digest check,
  aliases, evaluation verdicts — the calls the trainer and evaluator make.

``GrpcTrainingData`` (the training sets the feature store streams) is tested in
test_training_stream.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs.errors import NotFound
from libs.lifecycle.data import DatasetVersion, FeatureVersion
from libs.lifecycle.frames import class_names
from libs.lifecycle.registry import GrpcRegistry, Lineage, MetricPoint, ModelKey, RunSpec
from libs.rpc import ServerSecurity, insecure_channel
from libs.runtime import start_service
from libs.usecase import load_default
from services.registry.app import build as build_registry
from services.registry.settings import RegistrySettings
from services.trainer.recipe import TrainConfig
from services.trainer.training import train
from tests.training_sets import loan_frame, usecase

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
UC = "loan_approval"


@pytest.fixture
async def registry_target(kafka, tmp_path: Path) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    settings = RegistrySettings(
        grpc_port=0,
        metrics_port=0,
        kafka_bootstrap=kafka.bootstrap_servers,
        auth_mode="off",
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        artifact_root=tmp_path / "artifacts",
        consume=False,
        promoted_topic=f"promoted.{uuid.uuid4().hex[:8]}",
    )

    async def build(s: Any, t: Any) -> Any:
        return await build_registry(s, t, security=ServerSecurity(), usecases=load_default())

    service, _ = await start_service(settings, build)
    port = await service.server.start()
    yield f"127.0.0.1:{port}"
    await service.server.stop()
    await service.close()


async def test_grpc_registry_adapter_against_the_registry_service(registry_target: str) -> None:
    uc = usecase(UC)
    result = train(loan_frame(1500), uc, TrainConfig.from_usecase(uc, {"epochs": "3"}), seed=5)
    datasets = [DatasetVersion(UC, "raw-v1", "file:///data/raw-v1")]
    features = [FeatureVersion(UC, UC, "salary", "f1")]
    async with insecure_channel(registry_target) as channel:
        registry = GrpcRegistry(channel)
        run_id = await registry.create_run(
            RunSpec(
                run_id="run-job-1",
                use_case=UC,
                model_name=UC,
                training_request_id="job-1",
                seed=5,
                params=result.config.as_params(),
                code_version="abc",
                environment={"python": "3.11"},
                drift_report_id="rep-9",
                datasets=datasets,
                features=features,
            )
        )
        assert run_id == "run-job-1"
        assert (
            await registry.create_run(
                RunSpec(
                    run_id="run-job-1",
                    use_case=UC,
                    model_name=UC,
                    training_request_id="job-1",
                    seed=5,
                    params={},
                    code_version="abc",
                )
            )
            == run_id
        )  # idempotent
        await registry.log_metrics(run_id, [MetricPoint("train_loss", 0.5, "train", 1)])
        lineage = Lineage(
            use_case=UC,
            model_name=UC,
            run_id=run_id,
            training_request_id="job-1",
            task=uc.task,
            input_names=uc.model_inputs(),
            output_names=class_names(uc),
            code_version="abc",
            seed=5,
            datasets=datasets,
            features=features,
            metrics=[MetricPoint("auc", result.metrics["auc"], "validation")],
            params=result.config.as_params(),
            drift_report_id="rep-9",
            idempotency_key="job-1",
        )
        registered = await registry.register_version(result.artifact, result.reference, lineage)
        assert registered.ref == ModelKey(UC, UC, 1) and registered.artifact_sha256 == result.artifact_sha256
        again = await registry.register_version(result.artifact, result.reference, lineage)
        assert again.ref == registered.ref  # the same job registers once
        await registry.finish_run(
            run_id,
            metrics=[MetricPoint("auc", 0.9, "validation")],
            datasets=datasets,
            features=features,
            duration_s=1.5,
        )

        assert await registry.get_artifact(registered.ref) == result.artifact
        with pytest.raises(NotFound):
            await registry.get_artifact(ModelKey(UC, UC, 9))
        assert await registry.get_alias(UC, UC, "champion") is None

        stub = reg_grpc.RegistryServiceStub(channel)
        version = (
            await stub.GetModelVersion(reg_pb.GetModelVersionRequest(ref=registered.ref.to_proto()))
        ).model_version
        assert version.run_id == run_id and version.training_request_id == "job-1"
        assert version.drift_report_id == "rep-9" and version.code_version == "abc"
        assert list(version.signature.input_names) == uc.model_inputs()
        assert version.reference_profile_sha256
        run = (await stub.GetRun(reg_pb.GetRunRequest(run_id=run_id))).run
        assert run.status == reg_pb.RUN_STATUS_FINISHED and {m.name for m in run.metrics} >= {
            "train_loss",
            "auc",
        }

        await registry.record_evaluation(
            evaluator_events.ModelEvaluated(
                report_id="eval-1",
                model=registered.ref.to_proto(),
                passed=True,
                gates=[
                    evaluator_events.GateResult(
                        gate="metric_floor",
                        metric="auc",
                        value=0.9,
                        threshold=0.75,
                        passed=True,
                        comparator=">=",
                    )
                ],
                metrics=[common_pb2.Metric(name="auc", value=0.9, split="holdout")],
            )
        )
        # The use case's policy is auto: a passed first version becomes champion.
        assert await registry.get_alias(UC, UC, "champion") == registered.ref
