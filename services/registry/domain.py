"""Domain types of the registry: what the store returns and the core works with.

Plain frozen dataclasses, no protobuf and no ORM: ``convert.py`` maps them to and from
the gRPC messages, ``store/`` maps them to and from tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class VersionStatus(StrEnum):
    """Where a model version stands (mirrors ``ModelVersionStatus`` of the proto)."""

    CANDIDATE = "candidate"
    EVALUATION_FAILED = "evaluation_failed"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    ARCHIVED = "archived"


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class AliasChangeKind(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    SET = "set"
    DELETE = "delete"


CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"


@dataclass(frozen=True)
class Actor:
    """Who did something: a caller (principal) or the registry acting on an event."""

    subject: str
    roles: tuple[str, ...] = ()


SYSTEM = Actor("registry", ("service",))


@dataclass(frozen=True)
class DatasetRef:
    use_case: str
    version: str
    uri: str = ""


@dataclass(frozen=True)
class FeatureRef:
    use_case: str
    feature_view: str
    name: str
    version: str = ""


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    split: str = ""
    step: int = 0


@dataclass(frozen=True)
class Signature:
    """The I/O contract of a version (see ``export.py``)."""

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    task: str

    @property
    def n_inputs(self) -> int:
        return len(self.input_names)

    @property
    def n_outputs(self) -> int:
        return len(self.output_names)

    def to_json(self) -> dict[str, Any]:
        return {
            "input_names": list(self.input_names),
            "output_names": list(self.output_names),
            "task": self.task,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Signature:
        return Signature(tuple(data["input_names"]), tuple(data["output_names"]), data["task"])


@dataclass(frozen=True)
class ModelKey:
    use_case: str
    name: str


@dataclass(frozen=True)
class VersionKey:
    use_case: str
    name: str
    version: int

    @property
    def model(self) -> ModelKey:
        return ModelKey(self.use_case, self.name)

    def __str__(self) -> str:
        return f"{self.use_case}/{self.name}/v{self.version}"


@dataclass(frozen=True)
class NewVersion:
    """What a registration carries (artifacts already stored, digests checked)."""

    use_case: str
    name: str
    # Digests of stored artifacts ("" while the registration still carries the bytes).
    artifact_sha256: str = ""
    # None: derived from the use case spec.
    signature: Signature | None = None
    run_id: str = ""
    training_request_id: str = ""
    drift_report_id: str = ""
    reference_sha256: str = ""
    datasets: tuple[DatasetRef, ...] = ()
    features: tuple[FeatureRef, ...] = ()
    metrics: tuple[Metric, ...] = ()
    code_version: str = ""
    params: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    idempotency_key: str = ""


@dataclass(frozen=True)
class ModelVersion:
    use_case: str
    name: str
    version: int
    status: VersionStatus
    artifact_sha256: str
    signature: Signature
    created_at: datetime
    created_by: Actor
    run_id: str = ""
    training_request_id: str = ""
    drift_report_id: str = ""
    reference_sha256: str = ""
    datasets: tuple[DatasetRef, ...] = ()
    features: tuple[FeatureRef, ...] = ()
    metrics: tuple[Metric, ...] = ()
    code_version: str = ""
    params: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    evaluation_report_id: str = ""
    idempotency_key: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> VersionKey:
        return VersionKey(self.use_case, self.name, self.version)


@dataclass(frozen=True)
class Alias:
    use_case: str
    name: str
    alias: str
    version: int
    updated_at: datetime
    updated_by: Actor
    reason: str = ""


@dataclass(frozen=True)
class AliasChange:
    """One alias move; becomes an ``AliasChanged`` event (new/old version 0 = unset)."""

    use_case: str
    name: str
    alias: str
    new_version: int
    old_version: int
    kind: AliasChangeKind
    reason: str
    actor: Actor
    evidence_ids: tuple[str, ...]
    changed_at: datetime
    audit_event_id: str


@dataclass(frozen=True)
class GateResult:
    gate: str
    metric: str
    value: float
    threshold: float
    passed: bool
    comparator: str = ""
    message: str = ""


@dataclass(frozen=True)
class Evaluation:
    """An evaluator's verdict on a version (the ``ModelEvaluated`` event's content)."""

    report_id: str
    model: VersionKey
    passed: bool
    champion_version: int = 0
    gates: tuple[GateResult, ...] = ()
    metrics: tuple[Metric, ...] = ()
    dataset: DatasetRef | None = None
    evaluated_at: datetime | None = None


@dataclass(frozen=True)
class NewRun:
    use_case: str
    model_name: str
    run_id: str = ""
    training_request_id: str = ""
    drift_report_id: str = ""
    params: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    code_version: str = ""
    datasets: tuple[DatasetRef, ...] = ()
    features: tuple[FeatureRef, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Run:
    run_id: str
    use_case: str
    model_name: str
    status: RunStatus
    started_at: datetime
    created_by: Actor
    training_request_id: str = ""
    drift_report_id: str = ""
    params: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    code_version: str = ""
    datasets: tuple[DatasetRef, ...] = ()
    features: tuple[FeatureRef, ...] = ()
    seed: int | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    error: str = ""
    metrics: tuple[Metric, ...] = ()


@dataclass(frozen=True)
class AuditDraft:
    """An audit entry before the store has placed it in the chain."""

    action: str
    actor: Actor
    use_case: str = ""
    model_name: str = ""
    version: int = 0
    alias: str = ""
    reason: str = ""
    evidence_ids: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the hash-chained audit log (see ``audit.py``)."""

    event_id: str
    sequence: int
    time_us: int
    action: str
    actor: Actor
    use_case: str
    model_name: str
    version: int
    alias: str
    reason: str
    evidence_ids: tuple[str, ...]
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class PredictionEntry:
    """One served prediction, as the index keeps it (prediction id → model version)."""

    prediction_id: str
    use_case: str
    model_name: str
    version: int
    predicted_at: datetime | None = None
    alias: str = ""
    shadow: bool = False
    trace_id: str = ""
    entity_id: str = ""


@dataclass(frozen=True)
class Lineage:
    version: ModelVersion
    run: Run | None
    evaluations: tuple[Evaluation, ...]
    audit: tuple[AuditRecord, ...]
    prediction: PredictionEntry | None = None


@dataclass(frozen=True)
class ChainReport:
    """What verifying the audit chain found."""

    valid: bool
    checked: int
    head_hash: str
    first_invalid_sequence: int = 0
    first_invalid_event_id: str = ""
    message: str = ""


# ---------------------------------------------------------------- use-case catalogue


class UseCaseState(StrEnum):
    """Mirrors ``UseCaseState`` of the proto."""

    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class UseCaseRecord:
    """One use case of the catalogue: its current spec (or one of its versions) and state."""

    name: str
    version: int
    state: UseCaseState
    spec_yaml: str
    spec_sha256: str
    created_at: datetime
    created_by: Actor
    updated_at: datetime
    updated_by: Actor


@dataclass(frozen=True)
class UseCaseChange:
    """A catalogue change as the outbox keeps it until it is published (``UseCaseChanged``)."""

    record: UseCaseRecord
    reason: str
    audit_event_id: str
