"""Protobuf at the edge: requests and events in, jobs and events out."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime

from aifactory.common.v1 import common_pb2
from aifactory.monitor.v1 import events_pb2 as monitor_events
from aifactory.trainer.v1 import events_pb2 as trainer_events
from aifactory.trainer.v1 import trainer_service_pb2 as pb
from libs.errors import InvalidArgument
from libs.lifecycle.data import time_range_proto, timestamp, window_from_proto
from services.trainer.domain import Job, JobState, Reason, SkippedTraining, TrainedModel

_REASON_FROM_PB = {
    trainer_events.TRAINING_REASON_UNSPECIFIED: Reason.MANUAL,
    trainer_events.TRAINING_REASON_MANUAL: Reason.MANUAL,
    trainer_events.TRAINING_REASON_SCHEDULE: Reason.SCHEDULE,
    trainer_events.TRAINING_REASON_DRIFT: Reason.DRIFT,
}
_REASON_TO_PB = {
    Reason.MANUAL: trainer_events.TRAINING_REASON_MANUAL,
    Reason.SCHEDULE: trainer_events.TRAINING_REASON_SCHEDULE,
    Reason.DRIFT: trainer_events.TRAINING_REASON_DRIFT,
}
STATE_TO_PB = {
    JobState.QUEUED: pb.TRAINING_JOB_STATE_QUEUED,
    JobState.RUNNING: pb.TRAINING_JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.TRAINING_JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.TRAINING_JOB_STATE_FAILED,
    JobState.CANCELLED: pb.TRAINING_JOB_STATE_CANCELLED,
    JobState.SKIPPED: pb.TRAINING_JOB_STATE_SKIPPED,
}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}

# Job ids become run ids ("run-<job id>") and registry idempotency keys: the registry's
# identifier alphabet, with room for the prefix.
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,119}$")


def _job_id(request_id: str, fallback: str) -> str:
    job_id = request_id or fallback
    if not JOB_ID.match(job_id):
        raise InvalidArgument(
            "request_id", "1–120 characters of letters, digits and _.:- (starting with a letter or digit)"
        )
    return job_id


def _safe_id(prefix: str, text: str) -> str:
    """``prefix-text`` when that is a valid job id, else ``prefix-<digest of text>``."""
    candidate = f"{prefix}-{text}"
    return (
        candidate if JOB_ID.match(candidate) else f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:40]}"
    )


def job_from_requested(event: trainer_events.TrainingRequested, *, fallback_id: str = "") -> Job:
    """A TrainingRequested event (or its gRPC twin) → a new job (state QUEUED)."""
    if not event.use_case:
        raise InvalidArgument("use_case", "required")
    reason = _REASON_FROM_PB.get(event.reason)
    if reason is None:
        raise InvalidArgument("reason", f"unknown training reason {event.reason}")
    return Job(
        job_id=_job_id(event.request_id, fallback_id or f"train-{uuid.uuid4().hex}"),
        use_case=event.use_case,
        reason=reason,
        drift_report_id=event.drift_report_id,
        requested_by=event.requested_by.subject,
        requested_roles=tuple(event.requested_by.roles),
        seed=event.seed if event.HasField("seed") else None,
        window=window_from_proto(event.window) if event.HasField("window") else None,
        params=dict(event.params),
        created_at=event.requested_at.ToDatetime(tzinfo=UTC)
        if event.HasField("requested_at")
        else datetime.now(UTC),
    )


def requested_from_submit(
    request: pb.SubmitTrainingRequest, subject: str, roles: tuple[str, ...]
) -> trainer_events.TrainingRequested:
    event = trainer_events.TrainingRequested(
        request_id=_job_id(request.request_id, f"train-{uuid.uuid4().hex}"),
        use_case=request.use_case,
        reason=request.reason or trainer_events.TRAINING_REASON_MANUAL,
        drift_report_id=request.drift_report_id,
        requested_by=common_pb2.Actor(subject=subject, roles=list(roles)),
        requested_at=timestamp(datetime.now(UTC)),
        params=dict(request.params),
    )
    if request.HasField("seed"):
        event.seed = request.seed
    if request.HasField("window"):
        event.window.CopyFrom(request.window)
    return event


# The monitor's quality detector: its evidence's window_start is the change point.
CHANGE_POINT_STATISTIC = "cusum_llr"
OPEN_END = datetime(9999, 1, 1, tzinfo=UTC)


def requested_from_drift(
    event: monitor_events.DriftDetected, *, use_case: str, producer: str, event_id: str
) -> trainer_events.TrainingRequested:
    """A drift report → a retraining request; the request id follows the report, so the
    same report (replayed, or sent twice) asks for one training."""
    report = event.report_id or event_id
    requested = trainer_events.TrainingRequested(
        request_id=_safe_id("drift", report),
        use_case=use_case,
        reason=trainer_events.TRAINING_REASON_DRIFT,
        drift_report_id=event.report_id,
        requested_by=common_pb2.Actor(subject=producer or "monitor", roles=["service"]),
        requested_at=event.detected_at if event.HasField("detected_at") else timestamp(datetime.now(UTC)),
    )
    # Retrain on the newest window: the data after the estimated change point, when the
    # quality detector gave one (a model fitted across the change learns neither concept).
    starts = [
        e.window_start.ToDatetime(tzinfo=UTC)
        for e in event.evidence
        if e.statistic == CHANGE_POINT_STATISTIC and e.HasField("window_start")
    ]
    if starts:
        requested.window.start.CopyFrom(timestamp(min(starts)))
        requested.window.end.CopyFrom(timestamp(OPEN_END))
    return requested


def requested_from_job(job: Job) -> trainer_events.TrainingRequested:
    event = trainer_events.TrainingRequested(
        request_id=job.job_id,
        use_case=job.use_case,
        reason=_REASON_TO_PB[job.reason],
        drift_report_id=job.drift_report_id,
        requested_by=common_pb2.Actor(subject=job.requested_by, roles=list(job.requested_roles)),
        requested_at=timestamp(job.created_at),
        params=job.params,
    )
    if job.seed is not None:
        event.seed = job.seed
    if job.window is not None:
        event.window.CopyFrom(time_range_proto(job.window))
    return event


def job_to_proto(job: Job) -> pb.TrainingJob:
    out = pb.TrainingJob(
        job_id=job.job_id,
        use_case=job.use_case,
        state=STATE_TO_PB[job.state],
        reason=_REASON_TO_PB[job.reason],
        drift_report_id=job.drift_report_id,
        requested_by=common_pb2.Actor(subject=job.requested_by, roles=list(job.requested_roles)),
        params=dict(job.effective_params or job.params),
        run_id=job.run_id,
        metrics=[m.to_proto() for m in job.metrics],
        message=job.message,
        created_at=timestamp(job.created_at),
    )
    if job.seed is not None:
        out.seed = job.seed
    if job.window is not None:
        out.window.CopyFrom(time_range_proto(job.window))
    if job.model is not None:
        out.model.CopyFrom(job.model.to_proto())
    if job.started_at is not None:
        out.started_at.CopyFrom(timestamp(job.started_at))
    if job.finished_at is not None:
        out.finished_at.CopyFrom(timestamp(job.finished_at))
    return out


def model_trained(trained: TrainedModel) -> trainer_events.ModelTrained:
    job, registered = trained.job, trained.registered
    return trainer_events.ModelTrained(
        model=registered.ref.to_proto(),
        run_id=trained.run_id,
        datasets=[d.to_proto() for d in trained.datasets],
        features=[f.to_proto() for f in trained.features],
        metrics=[m.to_proto() for m in trained.metrics],
        request_id=job.job_id,
        artifact_uri=registered.artifact_uri,
        artifact_sha256=registered.artifact_sha256,
        code_version=trained.code_version,
        trained_at=timestamp(trained.trained_at),
        seed=trained.seed,
        params=dict(trained.params),
        window=time_range_proto(trained.window),
        reason=_REASON_TO_PB[job.reason],
        drift_report_id=job.drift_report_id,
    )


def training_skipped(skipped: SkippedTraining) -> trainer_events.TrainingSkipped:
    job = skipped.job
    event = trainer_events.TrainingSkipped(
        request_id=job.job_id,
        use_case=job.use_case,
        reason=_REASON_TO_PB[job.reason],
        drift_report_id=job.drift_report_id,
        code=skipped.code,
        message=skipped.message,
        labelled_rows=skipped.labelled_rows,
        needed_rows=skipped.needed_rows,
        window=time_range_proto(skipped.window),
        waited_s=skipped.waited_s,
    )
    event.skipped_at.CopyFrom(timestamp(skipped.skipped_at))
    return event
