"""The registry ports: what the trainer and the evaluator need from the model registry.

- :class:`ModelRegistry` (trainer): experiment runs as they go, then a candidate
  version registered with its artifact, reference statistics and lineage.
- :class:`EvaluationRegistry` (evaluator): artifacts by version, aliases, and the
  evaluation verdict (the registry acts on it by policy).

:class:`GrpcRegistry` implements both against ``aifactory.registry.v1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs import artifacts
from libs.errors import AifError, FailedPrecondition
from libs.lifecycle.artifact import sha256
from libs.lifecycle.data import DatasetVersion, FeatureVersion
from libs.rpc.errors import typed_rpc_error


@dataclass(frozen=True)
class ModelKey:
    """One version of a model (common.v1.ModelRef); version 0 means "not set"."""

    use_case: str
    model_name: str
    version: int

    def to_proto(self) -> common_pb2.ModelRef:
        return common_pb2.ModelRef(use_case=self.use_case, model_name=self.model_name, version=self.version)

    @classmethod
    def from_proto(cls, ref: common_pb2.ModelRef) -> ModelKey:
        return cls(ref.use_case, ref.model_name, ref.version)

    def __str__(self) -> str:
        return f"{self.use_case}/{self.model_name}@v{self.version}"


@dataclass(frozen=True)
class MetricPoint:
    """One metric value (common.v1.Metric): per epoch (step ≥ 1) or final (step 0)."""

    name: str
    value: float
    split: str = ""
    step: int = 0

    def to_proto(self) -> common_pb2.Metric:
        return common_pb2.Metric(name=self.name, value=self.value, split=self.split, step=self.step)

    @classmethod
    def from_proto(cls, m: common_pb2.Metric) -> MetricPoint:
        return cls(m.name, m.value, m.split, m.step)


@dataclass(frozen=True)
class RunSpec:
    """What is known about a training run when it starts."""

    run_id: str
    use_case: str
    model_name: str
    training_request_id: str
    seed: int
    params: Mapping[str, str]
    code_version: str
    environment: Mapping[str, str] = field(default_factory=dict)
    drift_report_id: str = ""
    datasets: Sequence[DatasetVersion] = ()
    features: Sequence[FeatureVersion] = ()


@dataclass(frozen=True)
class Lineage:
    """Everything a version is registered with besides its artifact and reference."""

    use_case: str
    model_name: str
    run_id: str
    training_request_id: str
    task: str
    input_names: Sequence[str]
    output_names: Sequence[str]
    code_version: str
    seed: int
    datasets: Sequence[DatasetVersion] = ()
    features: Sequence[FeatureVersion] = ()
    metrics: Sequence[MetricPoint] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    drift_report_id: str = ""
    # Registering twice with the same key returns the first version (crash + retry).
    idempotency_key: str = ""


@dataclass(frozen=True)
class RegisteredVersion:
    ref: ModelKey
    artifact_uri: str
    artifact_sha256: str


class ModelRegistry(Protocol):
    """The trainer's view of the registry. Every call is idempotent by its ids."""

    async def create_run(self, run: RunSpec) -> str:
        """Start (or find, for the same ``run.run_id``) a run; returns its id."""
        ...

    async def log_metrics(self, run_id: str, metrics: Sequence[MetricPoint]) -> None: ...

    async def finish_run(
        self,
        run_id: str,
        *,
        failed: bool = False,
        error: str = "",
        metrics: Sequence[MetricPoint] = (),
        datasets: Sequence[DatasetVersion] = (),
        features: Sequence[FeatureVersion] = (),
        duration_s: float | None = None,
    ) -> None: ...

    async def register_version(
        self, artifact: bytes, reference: Mapping[str, Any], lineage: Lineage
    ) -> RegisteredVersion:
        """Store the artifact and reference statistics, register a candidate version."""
        ...


class EvaluationRegistry(Protocol):
    """The evaluator's view of the registry."""

    async def get_artifact(self, ref: ModelKey) -> bytes:
        """The version's TorchScript artifact, digest verified; ``NotFound`` when unknown."""
        ...

    async def get_alias(self, use_case: str, model_name: str, alias: str) -> ModelKey | None:
        """The version an alias points at, ``None`` when the alias is not set."""
        ...

    async def record_evaluation(self, evaluation: evaluator_events.ModelEvaluated) -> None:
        """Store the verdict with the version (idempotent by report id)."""
        ...


def reference_json(reference: Mapping[str, Any]) -> bytes:
    """Reference statistics as canonical JSON (sorted keys; NaN refused: not JSON)."""
    return json.dumps(reference, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


class GrpcRegistry:
    """``ModelRegistry`` and ``EvaluationRegistry`` over ``aifactory.registry.v1``."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 60.0) -> None:
        self._stub = reg_grpc.RegistryServiceStub(channel)
        self._timeout = timeout_s

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise typed_rpc_error(exc, f"registry {method}") from None

    async def create_run(self, run: RunSpec) -> str:
        response = await self._call(
            "CreateRun",
            reg_pb.CreateRunRequest(
                run_id=run.run_id,
                use_case=run.use_case,
                model_name=run.model_name,
                training_request_id=run.training_request_id,
                drift_report_id=run.drift_report_id,
                params=dict(run.params),
                environment=dict(run.environment),
                code_version=run.code_version,
                datasets=[d.to_proto() for d in run.datasets],
                features=[f.to_proto() for f in run.features],
                seed=run.seed,
            ),
        )
        return str(response.run.run_id)

    async def log_metrics(self, run_id: str, metrics: Sequence[MetricPoint]) -> None:
        await self._call(
            "LogRunMetrics",
            reg_pb.LogRunMetricsRequest(run_id=run_id, metrics=[m.to_proto() for m in metrics]),
        )

    async def finish_run(
        self,
        run_id: str,
        *,
        failed: bool = False,
        error: str = "",
        metrics: Sequence[MetricPoint] = (),
        datasets: Sequence[DatasetVersion] = (),
        features: Sequence[FeatureVersion] = (),
        duration_s: float | None = None,
    ) -> None:
        request = reg_pb.FinishRunRequest(
            run_id=run_id,
            status=reg_pb.RUN_STATUS_FAILED if failed else reg_pb.RUN_STATUS_FINISHED,
            metrics=[m.to_proto() for m in metrics],
            error=error,
            datasets=[d.to_proto() for d in datasets],
            features=[f.to_proto() for f in features],
        )
        if duration_s is not None:
            request.duration_s = duration_s
        await self._call("FinishRun", request)

    async def register_version(
        self, artifact: bytes, reference: Mapping[str, Any], lineage: Lineage
    ) -> RegisteredVersion:
        digest = sha256(artifact)
        response = await self._call(
            "RegisterModelVersion",
            reg_pb.RegisterModelVersionRequest(
                use_case=lineage.use_case,
                model_name=lineage.model_name,
                run_id=lineage.run_id,
                training_request_id=lineage.training_request_id,
                artifact_sha256=digest,
                artifact_content=artifact,
                reference_profile_content=reference_json(reference),
                datasets=[d.to_proto() for d in lineage.datasets],
                features=[f.to_proto() for f in lineage.features],
                metrics=[m.to_proto() for m in lineage.metrics],
                code_version=lineage.code_version,
                params={**lineage.params, "seed": str(lineage.seed)},
                labels={"framework": "torchscript"},
                idempotency_key=lineage.idempotency_key or lineage.run_id,
                signature=reg_pb.ModelSignature(
                    input_names=list(lineage.input_names),
                    output_names=list(lineage.output_names),
                    task=lineage.task,
                ),
                drift_report_id=lineage.drift_report_id,
            ),
        )
        version = response.model_version
        if version.artifact_sha256 and version.artifact_sha256 != digest:
            raise FailedPrecondition(f"registry stored digest {version.artifact_sha256}, sent {digest}")
        return RegisteredVersion(ModelKey.from_proto(version.ref), version.artifact_uri, digest)

    async def get_artifact(self, ref: ModelKey) -> bytes:
        version = (
            await self._call("GetModelVersion", reg_pb.GetModelVersionRequest(ref=ref.to_proto()))
        ).model_version
        try:
            # Verified on arrival: DigestMismatch (DATA_LOSS) when it is not the registered digest.
            return await artifacts.download(self._stub, version.artifact_sha256, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise typed_rpc_error(exc, "registry DownloadArtifact") from None

    async def get_alias(self, use_case: str, model_name: str, alias: str) -> ModelKey | None:
        try:
            response = await self._call(
                "GetAlias", reg_pb.GetAliasRequest(use_case=use_case, model_name=model_name, alias=alias)
            )
        except AifError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        if not response.alias.version:
            return None
        return ModelKey(use_case, model_name, response.alias.version)

    async def record_evaluation(self, evaluation: evaluator_events.ModelEvaluated) -> None:
        await self._call("RecordEvaluation", reg_pb.RecordEvaluationRequest(evaluation=evaluation))
