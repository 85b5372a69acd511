"""gRPC servicer of the registry: protobuf in, the core's domain calls, protobuf out.

Who is calling comes from ``current_principal`` (set by the shared interceptor) and is
what the audit log records. Methods that name a resource by id only (a run, a
prediction, an artifact upload) check the caller's access to the resource's use case
with ``libs.auth.authorize_use_case`` once it is loaded, before answering.
"""

from __future__ import annotations

import hashlib
import json
from asyncio import to_thread
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import grpc

from aifactory.registry.v1 import registry_service_pb2 as pb
from aifactory.registry.v1 import registry_service_pb2_grpc
from libs.artifacts import DigestMismatch
from libs.auth import authorize_use_case, permitted_use_case
from libs.errors import FailedPrecondition, InvalidArgument, NotFound
from libs.rpc import current_principal
from services.registry import convert, validate
from services.registry.artifacts import ArtifactStore, check_digest
from services.registry.catalogue import UseCaseCatalogue
from services.registry.core import Registry
from services.registry.domain import CHAMPION, ChainReport, ModelKey, RunStatus, VersionKey
from services.registry.runs import RunTracker

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
CHUNK = 1 << 20
MAX_PAGE = 1000


def _key(ref: Any, field: str = "ref") -> VersionKey:
    validate.use_case(ref.use_case, f"{field}.use_case")
    validate.model_name(ref.model_name, f"{field}.model_name")
    validate.version(ref.version, f"{field}.version")
    return VersionKey(ref.use_case, ref.model_name, ref.version)


def _model(use_case: str, model_name: str) -> ModelKey:
    validate.use_case(use_case)
    # One model per use case by default: its name is the use case's.
    name = model_name or use_case
    validate.model_name(name)
    return ModelKey(use_case, name)


def _page(page_size: int, page_token: str, default: int = 100) -> tuple[int, int]:
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    try:
        offset = int(page_token) if page_token else 0
    except ValueError:
        raise InvalidArgument("page_token", "is not a token this service gave out") from None
    if offset < 0:
        raise InvalidArgument("page_token", "is not a token this service gave out")
    return offset, min(page_size or default, MAX_PAGE)


def _destination(uri: str, allowed: Sequence[Path]) -> Path | None:
    """Where ExportModelVersion may write: only inside the configured folders."""
    if not uri:
        return None
    path = uri.removeprefix("file://")
    if "://" in path or not path.startswith("/"):
        raise InvalidArgument("destination_uri", "must be an absolute path or a file:// URI")
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in allowed):
        raise InvalidArgument("destination_uri", f"must be inside {', '.join(str(r) for r in allowed)}")
    return resolved


class RegistryServicer(registry_service_pb2_grpc.RegistryServiceServicer):
    def __init__(
        self,
        registry: Registry,
        runs: RunTracker,
        artifacts: ArtifactStore,
        *,
        max_artifact_bytes: int = 512 * 1024 * 1024,
        export_roots: Sequence[Path] = (),
        catalogue: UseCaseCatalogue | None = None,
        verify_signed: Callable[[], Awaitable[ChainReport]] | None = None,
    ) -> None:
        self._catalogue = catalogue
        # The chain checked against the registry's signed checkpoints (None: it signs none).
        self._verify_signed = verify_signed
        self._registry = registry
        self._runs = runs
        self._artifacts = artifacts
        self._max_artifact = max_artifact_bytes
        self._export_roots = list(export_roots)

    # ------------------------------------------------------------ versions
    async def RegisterModelVersion(
        self, request: pb.RegisterModelVersionRequest, context: Context
    ) -> pb.RegisterModelVersionResponse:
        version = await to_thread(
            self._registry.register_version,
            convert.new_version_of(request),
            current_principal.get(),
            artifact=request.artifact_content,
            reference_profile=request.reference_profile_content,
        )
        return pb.RegisterModelVersionResponse(model_version=convert.version_pb(version))

    async def GetModelVersion(
        self, request: pb.GetModelVersionRequest, context: Context
    ) -> pb.GetModelVersionResponse:
        version = await to_thread(self._registry.get_version, _key(request.ref))
        return pb.GetModelVersionResponse(model_version=convert.version_pb(version))

    async def ListModelVersions(
        self, request: pb.ListModelVersionsRequest, context: Context
    ) -> pb.ListModelVersionsResponse:
        offset, limit = _page(request.page_size, request.page_token)
        status = convert.STATUS_FROM_PB.get(request.status) if request.status else None
        if request.status and status is None:
            raise InvalidArgument("status", f"unknown status {request.status}")
        versions = await to_thread(
            self._registry.list_versions, request.use_case, request.model_name, status, offset, limit + 1
        )
        token = str(offset + limit) if len(versions) > limit else ""
        return pb.ListModelVersionsResponse(
            model_versions=[convert.version_pb(v) for v in versions[:limit]], next_page_token=token
        )

    # ------------------------------------------------------------ aliases, approval, rollback
    async def SetAlias(self, request: pb.SetAliasRequest, context: Context) -> pb.SetAliasResponse:
        model = _model(request.use_case, request.model_name)
        expected = request.expected_version if request.HasField("expected_version") else None
        result = await to_thread(
            self._registry.set_alias,
            VersionKey(model.use_case, model.name, request.version),
            request.alias,
            current_principal.get(),
            reason=request.reason,
            evidence=list(request.evidence_ids),
            expected_version=expected,
        )
        response = pb.SetAliasResponse(
            previous_version=result.previous_version, audit_event_id=result.audit_event_id
        )
        if result.alias is not None:
            response.alias.CopyFrom(convert.alias_pb(result.alias))
        return response

    async def GetAlias(self, request: pb.GetAliasRequest, context: Context) -> pb.GetAliasResponse:
        model = _model(request.use_case, request.model_name)
        alias, version = await to_thread(self._registry.get_alias, model, request.alias)
        return pb.GetAliasResponse(alias=convert.alias_pb(alias), model_version=convert.version_pb(version))

    async def DeleteAlias(self, request: pb.DeleteAliasRequest, context: Context) -> pb.DeleteAliasResponse:
        expected = request.expected_version if request.HasField("expected_version") else None
        result = await to_thread(
            self._registry.delete_alias,
            _model(request.use_case, request.model_name),
            request.alias,
            current_principal.get(),
            reason=request.reason,
            expected_version=expected,
        )
        return pb.DeleteAliasResponse(
            previous_version=result.previous_version, audit_event_id=result.audit_event_id
        )

    async def ApproveModelVersion(
        self, request: pb.ApproveModelVersionRequest, context: Context
    ) -> pb.ApproveModelVersionResponse:
        approve = request.decision != pb.APPROVAL_DECISION_REJECT
        version, audit_id = await to_thread(
            self._registry.approve,
            _key(request.ref),
            approve,
            current_principal.get(),
            request.comment,
            list(request.evidence_ids),
        )
        return pb.ApproveModelVersionResponse(
            model_version=convert.version_pb(version), audit_event_id=audit_id
        )

    async def Rollback(self, request: pb.RollbackRequest, context: Context) -> pb.RollbackResponse:
        if request.to_version < 0:
            raise InvalidArgument("to_version", "must not be negative")
        result = await to_thread(
            self._registry.rollback,
            _model(request.use_case, request.model_name),
            current_principal.get(),
            alias=request.alias or CHAMPION,
            to_version=request.to_version,
            reason=request.reason,
            evidence=list(request.evidence_ids),
        )
        assert result is not None
        response = pb.RollbackResponse(
            previous_version=result.previous_version, audit_event_id=result.audit_event_id
        )
        if result.alias is not None:
            response.alias.CopyFrom(convert.alias_pb(result.alias))
        return response

    async def RecordEvaluation(
        self, request: pb.RecordEvaluationRequest, context: Context
    ) -> pb.RecordEvaluationResponse:
        if not request.HasField("evaluation"):
            raise InvalidArgument("evaluation", "is required")
        _key(request.evaluation.model, "evaluation.model")
        outcome = await to_thread(
            self._registry.apply_evaluation,
            convert.evaluation_of(request.evaluation),
            principal=current_principal.get(),
        )
        return pb.RecordEvaluationResponse(
            model_version=convert.version_pb(outcome.version),
            promoted=outcome.promoted,
            recorded=outcome.recorded,
        )

    # ------------------------------------------------------------ lineage and audit
    async def GetLineage(self, request: pb.GetLineageRequest, context: Context) -> pb.GetLineageResponse:
        subject = request.WhichOneof("subject")
        if subject == "model":
            lineage = await to_thread(self._registry.lineage, _key(request.model, "model"))
        elif subject == "prediction_id":
            lineage = await to_thread(self._registry.lineage_of_prediction, request.prediction_id)
        else:
            raise InvalidArgument("subject", "give a model or a prediction_id")
        authorize_use_case(lineage.version.use_case)
        return convert.lineage_pb(lineage)

    async def GetPrediction(
        self, request: pb.GetPredictionRequest, context: Context
    ) -> pb.GetPredictionResponse:
        entry = await to_thread(self._registry.prediction, request.prediction_id)
        if request.use_case and entry.use_case != request.use_case:
            # Resolved per use case: another use case's id answers as an unknown one.
            raise NotFound(f"prediction {request.prediction_id} is not in the prediction index")
        authorize_use_case(entry.use_case)
        return convert.prediction_pb(entry)

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: Context
    ) -> pb.ListAuditEventsResponse:
        after, limit = _page(request.page_size, request.page_token)
        after = max(after, request.after_sequence)
        model = None
        version = 0
        if request.HasField("model") and request.model.model_name:
            model = _model(request.model.use_case or request.use_case, request.model.model_name)
            version = request.model.version
        records = await to_thread(
            self._registry.list_audit, request.use_case, model, version, after, limit + 1
        )
        token = str(records[limit - 1].sequence) if len(records) > limit else ""
        return pb.ListAuditEventsResponse(
            audit_events=[convert.audit_pb(r) for r in records[:limit]], next_page_token=token
        )

    async def VerifyAuditChain(
        self, request: pb.VerifyAuditChainRequest, context: Context
    ) -> pb.VerifyAuditChainResponse:
        if self._verify_signed is not None:
            report = await self._verify_signed()
        else:
            report = await to_thread(self._registry.verify_audit)
        return pb.VerifyAuditChainResponse(
            valid=report.valid,
            events_checked=report.checked,
            first_invalid_sequence=report.first_invalid_sequence,
            message=report.message,
            head_hash=report.head_hash,
        )

    # ------------------------------------------------------------ export and artifacts
    async def ExportModelVersion(
        self, request: pb.ExportModelVersionRequest, context: Context
    ) -> pb.ExportModelVersionResponse:
        key = _key(request.ref)
        result = await to_thread(
            self._registry.export,
            key,
            current_principal.get(),
            _destination(request.destination_uri, self._export_roots),
        )
        version = await to_thread(self._registry.get_version, key)
        return pb.ExportModelVersionResponse(
            uri=result.version_dir.as_uri(),
            sha256=result.sha256,
            model_version=convert.version_pb(version),
            triton_model_name=result.model_name,
            repository=str(result.repository),
        )

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.UploadArtifactRequest], context: Context
    ) -> pb.UploadArtifactResponse:
        parts: list[bytes] = []
        hasher = hashlib.sha256()
        size = 0
        expected = use_case = ""
        first = True
        async for message in request_iterator:
            if first:
                if not message.expected_sha256:
                    raise InvalidArgument(
                        "expected_sha256", "is required in the first message (the content's SHA-256)"
                    )
                expected = check_digest(message.expected_sha256, "expected_sha256")
                use_case = message.use_case
                first = False
            size += len(message.chunk)
            if size > self._max_artifact:
                raise InvalidArgument("chunk", f"artifact larger than {self._max_artifact} bytes")
            hasher.update(message.chunk)
            parts.append(message.chunk)
        if use_case:
            validate.use_case(use_case)
        authorize_use_case(use_case)
        if not size:
            raise InvalidArgument("chunk", "the artifact is empty")
        if hasher.hexdigest() != expected:
            # Damaged on the way or mislabelled by the client: nothing is stored.
            raise DigestMismatch("upload (expected_sha256)", expected, hasher.hexdigest())
        stored = await to_thread(self._artifacts.put, b"".join(parts), expected)
        return pb.UploadArtifactResponse(sha256=stored.sha256, size_bytes=stored.size, uri=stored.uri)

    async def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: Context
    ) -> AsyncIterator[pb.DownloadArtifactResponse]:
        digest = check_digest(request.sha256, "sha256")
        content = await to_thread(self._artifacts.read, digest)  # verified: DATA_LOSS when corrupted
        yield pb.DownloadArtifactResponse(chunk=content[:CHUNK], size_bytes=len(content))
        for start in range(CHUNK, len(content), CHUNK):
            yield pb.DownloadArtifactResponse(chunk=content[start : start + CHUNK])

    async def GetServingBundle(
        self, request: pb.GetServingBundleRequest, context: Context
    ) -> pb.GetServingBundleResponse:
        key = _key(request.ref)
        bundle = await to_thread(self._registry.serving_bundle, key, request.instance_kind)
        return pb.GetServingBundleResponse(
            ref=convert.ref_pb(key),
            triton_model_name=bundle.model_name,
            config_json=json.dumps(bundle.config, sort_keys=True),
            files=[pb.ServingFile(path=f.path, sha256=f.sha256, size_bytes=f.size) for f in bundle.files],
        )

    async def GetReferenceStats(
        self, request: pb.GetReferenceStatsRequest, context: Context
    ) -> pb.GetReferenceStatsResponse:
        ref = request.ref
        if ref.version == 0 and request.alias:
            _, version = await to_thread(
                self._registry.get_alias, _model(ref.use_case, ref.model_name), request.alias
            )
            key = version.key
        else:
            key = _key(ref)
        version, content = await to_thread(self._registry.reference_profile, key)
        return pb.GetReferenceStatsResponse(
            ref=convert.ref_pb(key), sha256=version.reference_sha256, profile_json=content.decode()
        )

    # ------------------------------------------------------------ runs
    async def CreateRun(self, request: pb.CreateRunRequest, context: Context) -> pb.CreateRunResponse:
        run = await to_thread(self._runs.create, convert.new_run_of(request), current_principal.get())
        return pb.CreateRunResponse(run=convert.run_pb(run))

    async def LogRunMetrics(
        self, request: pb.LogRunMetricsRequest, context: Context
    ) -> pb.LogRunMetricsResponse:
        run = await to_thread(self._runs.get, request.run_id)
        authorize_use_case(run.use_case)
        metrics = convert.metrics_of(request.metrics)
        accepted = await to_thread(self._runs.log_metrics, request.run_id, metrics)
        return pb.LogRunMetricsResponse(accepted=accepted)

    async def FinishRun(self, request: pb.FinishRunRequest, context: Context) -> pb.FinishRunResponse:
        run = await to_thread(self._runs.get, request.run_id)
        authorize_use_case(run.use_case)
        status = RunStatus.FAILED if request.status == pb.RUN_STATUS_FAILED else RunStatus.FINISHED
        if request.status == pb.RUN_STATUS_RUNNING:
            raise InvalidArgument("status", "a run finishes as FINISHED or FAILED")
        done = await to_thread(
            self._runs.finish,
            request.run_id,
            current_principal.get(),
            status=status,
            error=request.error,
            metrics=convert.metrics_of(request.metrics),
            datasets=convert.datasets_of(request.datasets),
            features=convert.features_of(request.features),
            duration_s=request.duration_s if request.HasField("duration_s") else None,
        )
        return pb.FinishRunResponse(run=convert.run_pb(done))

    async def GetRun(self, request: pb.GetRunRequest, context: Context) -> pb.GetRunResponse:
        run = await to_thread(self._runs.get, request.run_id)
        authorize_use_case(run.use_case)
        return pb.GetRunResponse(run=convert.run_pb(run))

    # ------------------------------------------------------------ use-case catalogue
    def _usecases(self) -> UseCaseCatalogue:
        if self._catalogue is None:
            raise FailedPrecondition("this registry keeps no use-case catalogue")
        return self._catalogue

    async def ApplyUseCase(
        self, request: pb.ApplyUseCaseRequest, context: Context
    ) -> pb.ApplyUseCaseResponse:
        result = await to_thread(
            self._usecases().apply,
            request.use_case,
            request.spec_yaml,
            current_principal.get(),
            reason=request.reason,
            dry_run=request.dry_run,
        )
        return pb.ApplyUseCaseResponse(
            use_case=convert.usecase_entry_pb(result.record),
            outcome=convert.APPLY_OUTCOME_TO_PB[result.outcome],
            changes=[
                pb.UseCaseFieldChange(field=c.field, needs_new_model=c.needs_new_model)
                for c in result.changes
            ],
            audit_event_id=result.audit_event_id,
        )

    async def ListUseCases(
        self, request: pb.ListUseCasesRequest, context: Context
    ) -> pb.ListUseCasesResponse:
        records = await to_thread(self._usecases().list, request.include_retired)
        return pb.ListUseCasesResponse(
            use_cases=[
                convert.usecase_entry_pb(r, with_spec=False) for r in records if permitted_use_case(r.name)
            ]
        )

    async def GetUseCase(self, request: pb.GetUseCaseRequest, context: Context) -> pb.GetUseCaseResponse:
        record = await to_thread(self._usecases().get, request.use_case, request.version)
        return pb.GetUseCaseResponse(use_case=convert.usecase_entry_pb(record))

    async def RetireUseCase(
        self, request: pb.RetireUseCaseRequest, context: Context
    ) -> pb.RetireUseCaseResponse:
        record, audit_id = await to_thread(
            self._usecases().retire, request.use_case, current_principal.get(), reason=request.reason
        )
        return pb.RetireUseCaseResponse(use_case=convert.usecase_entry_pb(record), audit_event_id=audit_id)
