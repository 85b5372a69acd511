"""Protobuf at the edge: gRPC/Kafka messages to domain types and back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.registry.v1 import events_pb2 as registry_events
from aifactory.registry.v1 import registry_service_pb2 as pb
from libs.bus import Outgoing
from libs.errors import InvalidArgument
from libs.usecase.compat import Outcome
from services.registry.artifacts import URI_PREFIX
from services.registry.domain import (
    Actor,
    Alias,
    AliasChange,
    AliasChangeKind,
    AuditRecord,
    DatasetRef,
    Evaluation,
    FeatureRef,
    GateResult,
    Lineage,
    Metric,
    ModelVersion,
    NewRun,
    NewVersion,
    PredictionEntry,
    Run,
    RunStatus,
    Signature,
    UseCaseChange,
    UseCaseRecord,
    UseCaseState,
    VersionKey,
    VersionStatus,
)

STATUS_TO_PB = {
    VersionStatus.CANDIDATE: pb.MODEL_VERSION_STATUS_CANDIDATE,
    VersionStatus.EVALUATION_FAILED: pb.MODEL_VERSION_STATUS_EVALUATION_FAILED,
    VersionStatus.PENDING_APPROVAL: pb.MODEL_VERSION_STATUS_PENDING_APPROVAL,
    VersionStatus.APPROVED: pb.MODEL_VERSION_STATUS_APPROVED,
    VersionStatus.REJECTED: pb.MODEL_VERSION_STATUS_REJECTED,
    VersionStatus.ARCHIVED: pb.MODEL_VERSION_STATUS_ARCHIVED,
}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}
RUN_STATUS_TO_PB = {
    RunStatus.RUNNING: pb.RUN_STATUS_RUNNING,
    RunStatus.FINISHED: pb.RUN_STATUS_FINISHED,
    RunStatus.FAILED: pb.RUN_STATUS_FAILED,
}
KIND_TO_PB = {
    AliasChangeKind.PROMOTE: registry_events.ALIAS_CHANGE_KIND_PROMOTE,
    AliasChangeKind.ROLLBACK: registry_events.ALIAS_CHANGE_KIND_ROLLBACK,
    AliasChangeKind.SET: registry_events.ALIAS_CHANGE_KIND_SET,
    AliasChangeKind.DELETE: registry_events.ALIAS_CHANGE_KIND_DELETE,
}


def ts(value: datetime | None) -> Timestamp:
    out = Timestamp()
    if value is not None:
        out.FromDatetime(value.astimezone(UTC))
    return out


def from_ts(value: Timestamp, present: bool = True, field: str = "timestamp") -> datetime | None:
    if not present or (value.seconds == 0 and value.nanos == 0):
        return None
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:  # outside 0001..9999, or nanos out of range
        raise InvalidArgument(field, str(exc)) from None


def actor_pb(actor: Actor) -> common_pb2.Actor:
    return common_pb2.Actor(subject=actor.subject, roles=list(actor.roles))


def ref_pb(key: VersionKey) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(use_case=key.use_case, model_name=key.name, version=key.version)


def key_of(ref: common_pb2.ModelRef) -> VersionKey:
    return VersionKey(ref.use_case, ref.model_name, ref.version)


def datasets_of(items: Any) -> tuple[DatasetRef, ...]:
    return tuple(DatasetRef(d.use_case, d.version, d.uri) for d in items)


def features_of(items: Any) -> tuple[FeatureRef, ...]:
    return tuple(FeatureRef(f.use_case, f.feature_view, f.name, f.version) for f in items)


def metrics_of(items: Any) -> tuple[Metric, ...]:
    return tuple(Metric(m.name, m.value, m.split, m.step) for m in items)


def dataset_pb(d: DatasetRef) -> common_pb2.DatasetRef:
    return common_pb2.DatasetRef(use_case=d.use_case, version=d.version, uri=d.uri)


def feature_pb(f: FeatureRef) -> common_pb2.FeatureRef:
    return common_pb2.FeatureRef(
        use_case=f.use_case, feature_view=f.feature_view, name=f.name, version=f.version
    )


def metric_pb(m: Metric) -> common_pb2.Metric:
    return common_pb2.Metric(name=m.name, value=m.value, split=m.split, step=m.step)


def signature_of(msg: pb.ModelSignature) -> Signature | None:
    if not msg.input_names and not msg.output_names and not msg.task:
        return None
    return Signature(tuple(msg.input_names), tuple(msg.output_names), msg.task)


def new_version_of(req: pb.RegisterModelVersionRequest) -> NewVersion:
    return NewVersion(
        use_case=req.use_case,
        name=req.model_name or req.use_case,
        artifact_sha256=req.artifact_sha256,
        signature=signature_of(req.signature) if req.HasField("signature") else None,
        run_id=req.run_id,
        training_request_id=req.training_request_id,
        drift_report_id=req.drift_report_id,
        reference_sha256=req.reference_profile_sha256,
        datasets=datasets_of(req.datasets),
        features=features_of(req.features),
        metrics=metrics_of(req.metrics),
        code_version=req.code_version,
        params=dict(req.params),
        labels=dict(req.labels),
        idempotency_key=req.idempotency_key,
    )


def version_pb(v: ModelVersion) -> pb.ModelVersion:
    return pb.ModelVersion(
        ref=ref_pb(v.key),
        status=STATUS_TO_PB[v.status],
        run_id=v.run_id,
        training_request_id=v.training_request_id,
        artifact_uri=URI_PREFIX + v.artifact_sha256,
        artifact_sha256=v.artifact_sha256,
        reference_profile_uri=URI_PREFIX + v.reference_sha256 if v.reference_sha256 else "",
        datasets=[dataset_pb(d) for d in v.datasets],
        features=[feature_pb(f) for f in v.features],
        metrics=[metric_pb(m) for m in v.metrics],
        code_version=v.code_version,
        params=v.params,
        labels=v.labels,
        aliases=list(v.aliases),
        evaluation_report_id=v.evaluation_report_id,
        created_at=ts(v.created_at),
        created_by=actor_pb(v.created_by),
        signature=pb.ModelSignature(
            input_names=list(v.signature.input_names),
            output_names=list(v.signature.output_names),
            task=v.signature.task,
        ),
        drift_report_id=v.drift_report_id,
        reference_profile_sha256=v.reference_sha256,
    )


def alias_pb(a: Alias) -> pb.ModelAlias:
    return pb.ModelAlias(
        use_case=a.use_case,
        model_name=a.name,
        alias=a.alias,
        version=a.version,
        updated_at=ts(a.updated_at),
        updated_by=actor_pb(a.updated_by),
        reason=a.reason,
    )


def audit_pb(r: AuditRecord) -> pb.AuditEvent:
    return pb.AuditEvent(
        event_id=r.event_id,
        sequence=r.sequence,
        time=ts(datetime.fromtimestamp(r.time_us / 1_000_000, UTC)),
        actor=actor_pb(r.actor),
        action=r.action,
        use_case=r.use_case,
        model=common_pb2.ModelRef(use_case=r.use_case, model_name=r.model_name, version=r.version),
        alias=r.alias,
        reason=r.reason,
        evidence_ids=list(r.evidence_ids),
        details_json=json.dumps(r.details, sort_keys=True),
        prev_hash=r.prev_hash,
        hash=r.hash,
    )


def run_pb(r: Run) -> pb.Run:
    msg = pb.Run(
        run_id=r.run_id,
        use_case=r.use_case,
        model_name=r.model_name,
        training_request_id=r.training_request_id,
        drift_report_id=r.drift_report_id,
        status=RUN_STATUS_TO_PB[r.status],
        params=r.params,
        environment=r.environment,
        code_version=r.code_version,
        datasets=[dataset_pb(d) for d in r.datasets],
        features=[feature_pb(f) for f in r.features],
        seed=r.seed or 0,
        started_at=ts(r.started_at),
        duration_s=r.duration_s or 0.0,
        metrics=[metric_pb(m) for m in r.metrics],
        error=r.error,
        created_by=actor_pb(r.created_by),
    )
    if r.finished_at is not None:
        msg.finished_at.CopyFrom(ts(r.finished_at))
    return msg


def new_run_of(req: pb.CreateRunRequest) -> NewRun:
    return NewRun(
        use_case=req.use_case,
        model_name=req.model_name,
        run_id=req.run_id,
        training_request_id=req.training_request_id,
        drift_report_id=req.drift_report_id,
        params=dict(req.params),
        environment=dict(req.environment),
        code_version=req.code_version,
        datasets=datasets_of(req.datasets),
        features=features_of(req.features),
        seed=req.seed if req.HasField("seed") else None,
    )


def evaluation_of(msg: evaluator_events.ModelEvaluated) -> Evaluation:
    return Evaluation(
        report_id=msg.report_id,
        model=key_of(msg.model),
        passed=msg.passed,
        champion_version=msg.champion.version if msg.HasField("champion") else 0,
        gates=tuple(
            GateResult(g.gate, g.metric, g.value, g.threshold, g.passed, g.comparator, g.message)
            for g in msg.gates
        ),
        metrics=metrics_of(msg.metrics),
        dataset=DatasetRef(msg.dataset.use_case, msg.dataset.version, msg.dataset.uri)
        if msg.HasField("dataset")
        else None,
        evaluated_at=from_ts(msg.evaluated_at, msg.HasField("evaluated_at"), "evaluated_at"),
    )


def evaluation_pb(e: Evaluation) -> pb.Evaluation:
    msg = pb.Evaluation(
        report_id=e.report_id,
        model=ref_pb(e.model),
        passed=e.passed,
        gates=[
            evaluator_events.GateResult(
                gate=g.gate,
                metric=g.metric,
                value=g.value,
                threshold=g.threshold,
                passed=g.passed,
                comparator=g.comparator,
                message=g.message,
            )
            for g in e.gates
        ],
        metrics=[metric_pb(m) for m in e.metrics],
    )
    if e.champion_version:
        msg.champion.CopyFrom(ref_pb(VersionKey(e.model.use_case, e.model.name, e.champion_version)))
    if e.dataset is not None:
        msg.dataset.CopyFrom(dataset_pb(e.dataset))
    if e.evaluated_at is not None:
        msg.evaluated_at.CopyFrom(ts(e.evaluated_at))
    return msg


def lineage_pb(lineage: Lineage) -> pb.GetLineageResponse:
    msg = pb.GetLineageResponse(
        model_version=version_pb(lineage.version),
        audit_events=[audit_pb(r) for r in lineage.audit],
        evaluations=[evaluation_pb(e) for e in lineage.evaluations],
    )
    if lineage.run is not None:
        msg.run.CopyFrom(run_pb(lineage.run))
    if lineage.prediction is not None:
        p = lineage.prediction
        msg.prediction_id, msg.served_alias, msg.shadow = p.prediction_id, p.alias, p.shadow
        if p.predicted_at is not None:
            msg.predicted_at.CopyFrom(ts(p.predicted_at))
    return msg


def prediction_pb(p: PredictionEntry) -> pb.GetPredictionResponse:
    msg = pb.GetPredictionResponse(
        prediction_id=p.prediction_id,
        model=common_pb2.ModelRef(use_case=p.use_case, model_name=p.model_name, version=p.version),
        entity_id=p.entity_id,
        alias=p.alias,
    )
    if p.predicted_at is not None:
        msg.predicted_at.CopyFrom(ts(p.predicted_at))
    return msg


def lineage_to_json(lineage: Lineage) -> dict[str, Any]:
    """The lineage as plain JSON (written beside an exported version)."""
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(lineage_pb(lineage), preserving_proto_field_name=True)


def alias_changed_pb(c: AliasChange) -> registry_events.AliasChanged:
    return registry_events.AliasChanged(
        use_case=c.use_case,
        model_name=c.name,
        alias=c.alias,
        new_version=c.new_version,
        old_version=c.old_version,
        reason=c.reason,
        actor=actor_pb(c.actor),
        evidence_ids=list(c.evidence_ids),
        kind=KIND_TO_PB[c.kind],
        changed_at=ts(c.changed_at),
        audit_event_id=c.audit_event_id,
    )


def alias_changed_event(c: AliasChange, topic: str) -> Outgoing:
    """An outbox row as the event published: event id = its audit entry's id, key = the use
    case, so one use case's changes stay in order and a republished one is deduplicated."""
    return Outgoing(
        topic, alias_changed_pb(c), use_case=c.use_case, key=c.use_case, event_id=c.audit_event_id
    )


def prediction_of(msg: gateway_events.PredictionLogged) -> PredictionEntry:
    return PredictionEntry(
        prediction_id=msg.prediction_id,
        use_case=msg.use_case or msg.model.use_case,
        model_name=msg.model.model_name,
        version=msg.model.version,
        predicted_at=from_ts(msg.timestamp, msg.HasField("timestamp")),
        alias=msg.alias,
        shadow=msg.shadow,
        trace_id=msg.trace_id,
        entity_id=msg.entity_id,
    )


# ---------------------------------------------------------------- use-case catalogue

APPLY_OUTCOME_TO_PB = {
    Outcome.CREATED: pb.USE_CASE_APPLY_OUTCOME_CREATED,
    Outcome.UPDATED: pb.USE_CASE_APPLY_OUTCOME_UPDATED,
    Outcome.UNCHANGED: pb.USE_CASE_APPLY_OUTCOME_UNCHANGED,
}
USE_CASE_STATE_TO_PB = {
    UseCaseState.ACTIVE: registry_events.USE_CASE_STATE_ACTIVE,
    UseCaseState.RETIRED: registry_events.USE_CASE_STATE_RETIRED,
}


def usecase_entry_pb(record: UseCaseRecord, *, with_spec: bool = True) -> pb.UseCaseEntry:
    return pb.UseCaseEntry(
        use_case=record.name,
        version=record.version,
        state=USE_CASE_STATE_TO_PB[record.state],
        spec_yaml=record.spec_yaml if with_spec else "",
        spec_sha256=record.spec_sha256,
        created_at=ts(record.created_at),
        created_by=actor_pb(record.created_by),
        updated_at=ts(record.updated_at),
        updated_by=actor_pb(record.updated_by),
    )


def usecase_changed_pb(change: UseCaseChange) -> registry_events.UseCaseChanged:
    record = change.record
    return registry_events.UseCaseChanged(
        use_case=record.name,
        version=record.version,
        state=USE_CASE_STATE_TO_PB[record.state],
        spec_yaml=record.spec_yaml,
        spec_sha256=record.spec_sha256,
        actor=actor_pb(record.updated_by),
        changed_at=ts(record.updated_at),
        audit_event_id=change.audit_event_id,
        reason=change.reason,
    )


def usecase_changed_event(change: UseCaseChange, topic: str) -> Outgoing:
    """A catalogue change as published: keyed by the use case (the compacted topic keeps
    each use case's latest entry), event id = its audit entry's id."""
    name = change.record.name
    return Outgoing(
        topic, usecase_changed_pb(change), use_case=name, key=name, event_id=change.audit_event_id
    )
