"""Protobuf ↔ domain at the monitor's edges: events in, events and API messages out."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.monitor.v1 import events_pb2 as pb_events
from aifactory.monitor.v1 import monitor_service_pb2 as pb
from aifactory.registry.v1 import events_pb2 as registry_events
from libs.errors import InvalidArgument
from libs.usecase import UseCase
from services.monitor.domain import (
    Alert,
    AliasKind,
    AliasMove,
    DriftAlarm,
    Evidence,
    Outcome,
    Prediction,
    Report,
    RollbackRequest,
    Severity,
    VersionKey,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How far ahead of the monitor's clock an event's own time may be. Event times drive the
# join's watermarks (an outcome stamped next year would expire every waiting prediction),
# and feedback comes from apps: a time beyond this is taken as now + CLOCK_SKEW.
CLOCK_SKEW = timedelta(seconds=30)


def not_after(at: datetime, received: datetime) -> datetime:
    """``at``, or ``received + CLOCK_SKEW`` when later: no event moves the monitor's clock."""
    limit = received + CLOCK_SKEW
    return limit if at > limit else at


def ts(at: datetime | None) -> Timestamp:
    out = Timestamp()
    if at is not None:
        out.FromDatetime(at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC))
    return out


def when(stamp: Timestamp, fallback: datetime | None = None, field: str = "timestamp") -> datetime:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return fallback or _EPOCH
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:  # outside 0001..9999, or nanos out of range
        raise InvalidArgument(field, str(exc)) from None


def _scalar(value: common_pb2.Value) -> float | str | None:
    kind = value.WhichOneof("kind")
    if kind in (None, "null_value"):
        return None
    v = getattr(value, kind)
    return float(v) if isinstance(v, bool | int | float) else v


def class_index(uc: UseCase, value: object) -> int | None:
    """Index of ``value`` in the spec's classes, comparing as text ("1" == 1 == 1.0)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip().lower()
    for i, c in enumerate(uc.label.classes or ()):
        if str(c).strip().lower() == text:
            return i
    return None


def _number(value: object) -> float | None:
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _feature(value: common_pb2.Value) -> float | None:
    """A numeric feature value; None when missing or not a number (e.g. a hashed field)."""
    kind = value.WhichOneof("kind")
    if kind == "double_value":
        x = value.double_value
        return x if math.isfinite(x) else None
    if kind == "int64_value":
        return float(value.int64_value)
    if kind == "bool_value":
        return float(value.bool_value)
    return None


def key_of(ref: common_pb2.ModelRef, use_case: str) -> VersionKey:
    return VersionKey(ref.use_case or use_case, ref.model_name or use_case, ref.version)


def prediction_of(event: gateway_events.PredictionLogged, uc: UseCase, received: datetime) -> Prediction:
    """A logged prediction as the monitor keeps it; InvalidArgument names a bad field."""
    if not event.prediction_id:
        raise InvalidArgument("prediction_id", "required")
    if event.model.version <= 0:
        raise InvalidArgument("model.version", "required (the version that served the prediction)")
    features = {name: _feature(v) for name, v in event.features.items()}
    primary = _scalar(event.output)
    score: float | None = None
    predicted: int | None = None
    if uc.task == "regression":
        score = _number(primary)
        if score is None:
            raise InvalidArgument("output", "expected the predicted value (a finite number)")
    else:
        classes = [str(c) for c in uc.label.classes or ()]
        probabilities = [
            _number(_scalar(event.outputs[f"p_{c}"])) if f"p_{c}" in event.outputs else None for c in classes
        ]
        if "label" in event.outputs:
            predicted = class_index(uc, _scalar(event.outputs["label"]))
        if predicted is None and all(p is not None for p in probabilities):
            predicted = max(range(len(classes)), key=lambda i: probabilities[i] or 0.0)
        if uc.task == "binary":
            score = _number(primary) if _number(primary) is not None else probabilities[1]
            if predicted is None and score is not None:
                predicted = 1 if score >= 0.5 else 0
        elif predicted is None:
            predicted = class_index(uc, primary)
        if predicted is None:
            raise InvalidArgument("output", f"no predicted class of {classes} in output/outputs")
    return Prediction(
        event.prediction_id,
        key_of(event.model, event.use_case),
        not_after(when(event.timestamp, received), received),
        features,
        score,
        predicted,
        event.alias or "champion",
    )


def outcome_of(event: gateway_events.FeedbackRecorded, uc: UseCase, received: datetime) -> Outcome:
    if not event.prediction_id:
        raise InvalidArgument("prediction_id", "required")
    raw = _scalar(event.outcome)
    if uc.task == "regression":
        value = _number(raw) if not isinstance(raw, str) else None
        if value is None:
            raise InvalidArgument("outcome", f"expected a finite number for {uc.label.field}, got {raw!r}")
    else:
        index = class_index(uc, raw)
        if index is None:
            raise InvalidArgument("outcome", f"{raw!r} is not one of {list(uc.label.classes or ())}")
        value = float(index)
    observed = not_after(when(event.observed_at, when(event.recorded_at, received)), received)
    event_time = (
        not_after(when(event.event_time, field="event_time"), received)
        if event.HasField("event_time")
        else None
    )
    return Outcome(event.prediction_id, event.use_case, value, observed, event.feedback_id, event_time)


_KINDS = {
    registry_events.ALIAS_CHANGE_KIND_PROMOTE: AliasKind.PROMOTE,
    registry_events.ALIAS_CHANGE_KIND_ROLLBACK: AliasKind.ROLLBACK,
    registry_events.ALIAS_CHANGE_KIND_SET: AliasKind.SET,
    registry_events.ALIAS_CHANGE_KIND_DELETE: AliasKind.DELETE,
}


def alias_move_of(event: registry_events.AliasChanged, event_id: str, received: datetime) -> AliasMove:
    return AliasMove(
        event.use_case,
        event.model_name or event.use_case,
        event.alias,
        event.new_version,
        event.old_version,
        _KINDS.get(event.kind, AliasKind.OTHER),
        when(event.changed_at, received),
        event_id,
    )


# ---------------------------------------------------------------------- out
def model_ref(key: VersionKey) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(use_case=key.use_case, model_name=key.model_name, version=key.version)


def evidence_pb(e: Evidence) -> pb_events.DriftEvidence:
    out = pb_events.DriftEvidence(
        feature=e.feature,
        statistic=e.statistic,
        value=e.value,
        threshold=e.threshold,
        window_start=ts(e.window_start),
        window_end=ts(e.window_end),
        sample_size=e.sample_size,
        kind=pb_events.EvidenceKind.Name(int(e.kind)),
        drifted=e.drifted,
    )
    if e.p_value is not None:
        out.p_value = e.p_value
    return out


def report_pb(r: Report) -> pb.DriftReport:
    return pb.DriftReport(
        report_id=r.report_id,
        use_case=r.model.use_case,
        model=model_ref(r.model),
        drift_detected=r.drift_detected,
        evidence=[evidence_pb(e) for e in r.evidence],
        window=common_pb2.TimeRange(start=ts(r.window_start), end=ts(r.window_end)),
        created_at=ts(r.created_at),
    )


def alert_pb(a: Alert) -> pb.Alert:
    out = pb.Alert(
        alert_id=a.alert_id,
        use_case=a.model.use_case,
        model=model_ref(a.model),
        severity=pb.AlertSeverity.Name(int(a.severity)),
        kind=a.kind,
        message=a.message,
        report_id=a.report_id,
        created_at=ts(a.created_at),
    )
    if a.resolved_at is not None:
        out.resolved_at.CopyFrom(ts(a.resolved_at))
    return out


def severity_of(value: int) -> Severity | None:
    return Severity(value) if value in (1, 2, 3) else None


def drift_detected_pb(alarm: DriftAlarm) -> pb_events.DriftDetected:
    return pb_events.DriftDetected(
        report_id=alarm.report_id,
        use_case=alarm.model.use_case,
        model=model_ref(alarm.model),
        evidence=[evidence_pb(e) for e in alarm.evidence],
        detected_at=ts(alarm.detected_at),
    )


def rollback_pb(request: RollbackRequest) -> pb_events.RollbackRequested:
    return pb_events.RollbackRequested(
        request_id=request.request_id,
        use_case=request.model.use_case,
        model=model_ref(request.model),
        alias=request.alias,
        reason=request.reason,
        evidence_ids=list(request.evidence_ids),
        requested_at=ts(request.requested_at),
    )
