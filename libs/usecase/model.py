"""The use-case spec: one declarative document per AI application.

Every section forbids unknown keys, so a typo is an error and not a silently
ignored setting. Cross-field rules (the entity key is a declared field, a
feature reads a numeric field, the metric fits the task, ...) are checked in
:meth:`UseCase._check_references`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

NAME = r"^[a-z][a-z0-9_]{0,47}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: object) -> object:
    """'90s', '5m', '1h', '30d' (or a number of seconds) → timedelta."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration like 500ms, 30s, 5m, 1h or 7d")
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Name = Annotated[str, Field(pattern=NAME)]
Scalar = str | int | float | bool


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(Strict):
    """One field of the record schema: its type and the contract it must meet."""

    type: Literal["string", "int", "float", "bool", "timestamp"]
    required: bool = False
    min: float | None = None
    max: float | None = None
    enum: list[Scalar] | None = Field(default=None, min_length=1, max_length=1000)
    max_length: int = Field(default=1024, ge=1, le=65536)
    # Personal data: never written in clear to logs, traces or the prediction log.
    pii: Literal["none", "hash", "drop"] = "none"
    description: str = ""

    @property
    def numeric(self) -> bool:
        return self.type in ("int", "float", "bool")

    @model_validator(mode="after")
    def _range_fits_type(self) -> FieldSpec:
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"min/max apply to int and float fields, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class EntitySpec(Strict):
    field: Name


class EventTimeSpec(Strict):
    field: Name
    # Records stamped further in the future than this are rejected (clock skew).
    max_future_skew: Duration = timedelta(minutes=5)


class LabelSpec(Strict):
    field: Name
    # "record": the label is a field of the record; "feedback": it arrives later,
    # as an outcome reported for a prediction or an entity (feedback topic / API).
    arrives: Literal["record", "feedback"]
    # Classification: the label values in class-index order.
    classes: list[Scalar] | None = Field(default=None, min_length=2, max_length=1000)
    # How long after a prediction its outcome may still arrive and be joined.
    max_delay: Duration = timedelta(hours=1)


class RowFeature(Strict):
    """A feature computed from one record: the field itself, log1p, a ratio, or one-hot."""

    name: Name
    transform: Literal["identity", "log1p", "ratio", "one_hot"] = "identity"
    source: Name
    # Denominator of a ratio.
    other: Name | None = None


class AggregateFeature(Strict):
    """A per-entity aggregate over the records of the last ``window`` (event time)."""

    name: Name
    aggregate: Literal["count", "sum", "mean", "min", "max", "last"]
    source: Name | None = None  # not used by count
    window: Duration


class FeaturesSpec(Strict):
    row: list[RowFeature] = Field(default_factory=list, max_length=500)
    aggregates: list[AggregateFeature] = Field(default_factory=list, max_length=200)
    # Feast: how long an entity's features stay valid for point-in-time joins.
    ttl: Duration = timedelta(days=30)


class ModelSpec(Strict):
    family: Literal["mlp", "linear"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [64, 64], max_length=8)
    epochs: int = Field(default=30, ge=1, le=10_000)
    batch_size: int = Field(default=256, ge=1, le=65_536)
    learning_rate: float = Field(default=1e-3, gt=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    early_stopping_patience: int = Field(default=3, ge=1, le=1000)
    seed: int = 42


class TrainingSpec(Strict):
    # The event-time window of records a training set is built from.
    window: Duration = timedelta(days=30)
    min_rows: int = Field(default=500, ge=10)
    # Newest share of the window held out for early stopping (time-based split).
    validation_fraction: float = Field(default=0.2, gt=0, lt=0.9)


class FairnessGate(Strict):
    attribute: Name
    # Demographic parity difference: largest gap in positive rate between groups.
    max_gap: float = Field(ge=0, le=1)


class EvaluationSpec(Strict):
    metric: Literal["auc", "accuracy", "f1_macro", "mae", "rmse"]
    floor: float
    # Largest allowed loss against the champion on the same window, in metric units.
    max_regression: float = Field(default=0.02, ge=0)
    # The newest labelled window, never seen by training.
    holdout: Duration = timedelta(hours=1)
    fairness: FairnessGate | None = None
    max_calibration_error: float | None = Field(default=None, gt=0, le=1)

    @property
    def higher_is_better(self) -> bool:
        return self.metric in ("auc", "accuracy", "f1_macro")


class DriftSpec(Strict):
    psi_threshold: float = Field(default=0.2, gt=0)
    ks_pvalue: float = Field(default=0.01, gt=0, lt=1)
    chi2_pvalue: float = Field(default=0.01, gt=0, lt=1)
    # Live window compared with the reference, in predictions.
    window: int = Field(default=500, ge=10)
    min_samples: int = Field(default=200, ge=10)
    # Consecutive windows over threshold before an alarm, and under it before clearing.
    hysteresis: int = Field(default=2, ge=1, le=100)
    # Alarm when live quality falls this far below the training reference.
    quality_drop: float = Field(default=0.1, gt=0)
    # An alarm still standing after this many more windows (feature or quality) with the
    # same champion is raised again: the retraining it asked for failed, was refused by
    # its gates, or never came, and the drift is still there.
    realarm_windows: int = Field(default=10, ge=1, le=10_000)


class RetrainingSpec(Strict):
    debounce: Duration = timedelta(seconds=30)
    cooldown: Duration = timedelta(minutes=2)
    max_per_day: int = Field(default=10, ge=0, le=1000)


class DeploymentSpec(Strict):
    promotion: Literal["auto", "approval"] = "auto"
    strategy: Literal["champion", "canary", "shadow"] = "champion"
    canary_share: float = Field(default=0.1, ge=0, le=1)
    # After a promotion: roll back when live quality is this much worse than before.
    rollback_margin: float = Field(default=0.05, ge=0)


class Owner(Strict):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    role: str = "owner"


class UseCase(Strict):
    name: Name
    version: int = Field(ge=1)
    description: str = Field(default="", max_length=4000)
    owners: list[Owner] = Field(min_length=1)
    task: Literal["binary", "multiclass", "regression"]
    entity: EntitySpec
    event_time: EventTimeSpec
    fields: dict[Name, FieldSpec] = Field(min_length=1, max_length=1000)
    label: LabelSpec
    features: FeaturesSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec
    drift: DriftSpec = Field(default_factory=DriftSpec)
    retraining: RetrainingSpec = Field(default_factory=RetrainingSpec)
    deployment: DeploymentSpec = Field(default_factory=DeploymentSpec)

    @model_validator(mode="after")
    def _check_references(self) -> UseCase:
        def need(path: str, name: str | None, *, numeric: bool = False) -> FieldSpec:
            if name is None or name not in self.fields:
                raise ValueError(f"{path}: {name!r} is not a field of the record schema")
            spec = self.fields[name]
            if numeric and not spec.numeric:
                raise ValueError(f"{path}: field {name!r} is {spec.type}, not numeric")
            return spec

        entity = need("entity.field", self.entity.field)
        if entity.type not in ("string", "int") or not entity.required:
            raise ValueError("entity.field: the entity key must be a required string or int field")
        if need("event_time.field", self.event_time.field).type != "timestamp":
            raise ValueError("event_time.field: must be a timestamp field")
        need("label.field", self.label.field)
        if self.task == "regression":
            if self.label.classes is not None:
                raise ValueError("label.classes: a regression label has no classes")
            if self.evaluation.metric not in ("mae", "rmse"):
                raise ValueError(f"evaluation.metric: {self.evaluation.metric} does not fit regression")
        else:
            if self.label.classes is None:
                raise ValueError(f"label.classes: a {self.task} label needs its classes")
            if self.task == "binary" and len(self.label.classes) != 2:
                raise ValueError("label.classes: a binary label has exactly two classes")
            if self.evaluation.metric in ("mae", "rmse"):
                raise ValueError(f"evaluation.metric: {self.evaluation.metric} does not fit classification")
            if self.evaluation.metric == "auc" and self.task != "binary":
                raise ValueError("evaluation.metric: auc is for binary tasks; use accuracy or f1_macro")
        names: set[str] = set()
        for i, f in enumerate(self.features.row):
            if f.transform == "one_hot":
                if not need(f"features.row.{i}.source", f.source).enum:
                    raise ValueError(f"features.row.{i}.source: one_hot needs a field with an enum")
            else:
                need(f"features.row.{i}.source", f.source, numeric=True)
            if f.transform == "ratio":
                need(f"features.row.{i}.other", f.other, numeric=True)
            elif f.other is not None:
                raise ValueError(f"features.row.{i}.other: only a ratio has a denominator")
            names.add(f.name)
        for i, a in enumerate(self.features.aggregates):
            if a.aggregate == "count":
                if a.source is not None:
                    raise ValueError(f"features.aggregates.{i}.source: count takes no source")
            else:
                need(f"features.aggregates.{i}.source", a.source, numeric=True)
            if a.window > self.features.ttl:
                raise ValueError(f"features.aggregates.{i}.window: longer than features.ttl")
            names.add(a.name)
        if len(names) != len(self.features.row) + len(self.features.aggregates):
            raise ValueError("features: feature names must be unique")
        if not names:
            raise ValueError("features: a use case needs at least one feature")
        for label_like in (self.label.field, self.entity.field, self.event_time.field):
            if any(f.source == label_like for f in self.features.row):
                raise ValueError(f"features.row: {label_like!r} cannot be a model input")
        if self.evaluation.fairness:
            need("evaluation.fairness.attribute", self.evaluation.fairness.attribute)
        return self

    # -- derived -----------------------------------------------------------------

    @property
    def raw_topic(self) -> str:
        return f"aif.{self.name}.raw"

    def model_inputs(self) -> list[str]:
        """The model's input columns, in order (one-hot features expand per category)."""
        columns: list[str] = []
        for f in self.features.row:
            if f.transform == "one_hot":
                columns += [f"{f.name}__{c}" for c in self.fields[f.source].enum or ()]
            else:
                columns.append(f.name)
        columns += [a.name for a in self.features.aggregates]
        return columns

    def pii_fields(self) -> dict[str, str]:
        """Field name → "hash" or "drop" for every personal-data field."""
        return {n: f.pii for n, f in self.fields.items() if f.pii != "none"}
