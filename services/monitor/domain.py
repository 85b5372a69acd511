"""Domain types of the monitor: what it reads (predictions, outcomes, alias changes) and
what it produces (evidence, reports, alerts, drift and rollback requests).

Protobuf stays at the edges (:mod:`services.monitor.convert`); the core works on these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum

CHAMPION = "champion"


@dataclass(frozen=True, order=True)
class VersionKey:
    use_case: str
    model_name: str
    version: int

    def __str__(self) -> str:
        return f"{self.use_case}/{self.model_name}/v{self.version}"


@dataclass(frozen=True)
class Prediction:
    """One served (non-shadow) prediction as the monitor keeps it."""

    prediction_id: str
    model: VersionKey
    at: datetime
    # Model-input features by name; None when missing (or not numeric, e.g. hashed).
    features: Mapping[str, float | None]
    # Binary: P(classes[1]); regression: the predicted value; multiclass: None.
    score: float | None
    # Classification: index of the predicted class; None for regression.
    predicted: int | None
    alias: str = CHAMPION


@dataclass(frozen=True)
class Outcome:
    """An observed outcome (label) for a prediction."""

    prediction_id: str
    use_case: str
    # Classification: class index; regression: the value.
    value: float
    observed_at: datetime
    feedback_id: str = ""
    # Event time of the example the outcome is about (the record's), when the app said.
    event_time: datetime | None = None


@dataclass(frozen=True)
class Labelled:
    """A prediction joined with its outcome."""

    prediction: Prediction
    outcome: Outcome

    @property
    def data_time(self) -> datetime:
        """When the example happened in the data's own time (what a retraining window is
        cut on); the prediction's time when the outcome did not say."""
        return self.outcome.event_time or self.prediction.at

    @property
    def error(self) -> float:
        """Classification: 1.0 for a wrong class, else 0.0; regression: the absolute error."""
        p = self.prediction
        if p.predicted is not None:
            return 0.0 if p.predicted == int(self.outcome.value) else 1.0
        return abs((p.score or 0.0) - self.outcome.value)


class AliasKind(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    SET = "set"
    DELETE = "delete"
    OTHER = "other"


@dataclass(frozen=True)
class AliasMove:
    """An alias of a model now points at another version (registry's AliasChanged)."""

    use_case: str
    model_name: str
    alias: str
    new_version: int
    old_version: int
    kind: AliasKind
    at: datetime
    event_id: str = ""


class EvidenceKind(IntEnum):
    FEATURE = 1
    PREDICTION = 2
    PERFORMANCE = 3


@dataclass(frozen=True)
class Evidence:
    """One statistic over a window. For ``ks``/``chi2``, ``threshold`` applies to ``p_value``
    (drifted when below it); for ``psi``/``cusum_llr`` to ``value`` (drifted when above);
    for quality metrics it is the worst acceptable live value."""

    feature: str
    statistic: str
    value: float
    threshold: float
    window_start: datetime
    window_end: datetime
    sample_size: int
    kind: EvidenceKind
    drifted: bool
    p_value: float | None = None


@dataclass(frozen=True)
class Report:
    """Every statistic of one check of a model version over a window."""

    report_id: str
    model: VersionKey
    drift_detected: bool
    evidence: tuple[Evidence, ...]
    window_start: datetime
    window_end: datetime
    created_at: datetime


class Severity(IntEnum):
    INFO = 1
    WARNING = 2
    CRITICAL = 3


@dataclass(frozen=True)
class Alert:
    alert_id: str
    model: VersionKey
    severity: Severity
    kind: str  # "drift", "performance", "rollback"
    message: str
    report_id: str
    created_at: datetime
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class DriftAlarm:
    """A drift episode opened: published as ``DriftDetected`` (event id = report id)."""

    report_id: str
    model: VersionKey
    evidence: tuple[Evidence, ...]
    detected_at: datetime


@dataclass(frozen=True)
class RollbackRequest:
    """Published as ``RollbackRequested`` (event id = request id)."""

    request_id: str
    model: VersionKey
    alias: str
    reason: str
    evidence_ids: tuple[str, ...]
    requested_at: datetime


@dataclass
class Effects:
    """What handling one event produced; the service persists it in one transaction
    (with the events in an outbox), then publishes the events."""

    reports: list[Report] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    # alert id → when it was resolved
    resolved: dict[str, datetime] = field(default_factory=dict)
    # state key → JSON-able state, saved so a restart resumes (and does not re-alarm)
    states: dict[str, dict[str, object]] = field(default_factory=dict)
    alarms: list[DriftAlarm] = field(default_factory=list)
    rollbacks: list[RollbackRequest] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.reports or self.alerts or self.resolved or self.states or self.alarms or self.rollbacks
        )

    def merge(self, other: Effects) -> Effects:
        self.reports += other.reports
        self.alerts += other.alerts
        self.resolved.update(other.resolved)
        self.states.update(other.states)
        self.alarms += other.alarms
        self.rollbacks += other.rollbacks
        return self
