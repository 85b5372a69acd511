"""The evaluator's domain types: gate results and the evaluation report. No protobuf.

A :class:`Report` is what one evaluation found: the candidate's (and the champion's)
metrics on the holdout, each gate's result and the verdict. :mod:`.convert` turns it
into the ``EvaluationReport`` and ``ModelEvaluated`` messages at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from libs.lifecycle.data import DatasetVersion
from libs.lifecycle.frames import Window
from libs.lifecycle.registry import MetricPoint, ModelKey


@dataclass(frozen=True)
class GateResult:
    gate: str
    metric: str
    value: float
    threshold: float
    passed: bool
    comparator: str
    message: str

    @property
    def skipped(self) -> bool:
        return self.message.startswith("skipped:")


@dataclass(frozen=True)
class SliceMetrics:
    """The use case's metric (and, for classification, the positive rate) on one group."""

    metrics: tuple[MetricPoint, ...]
    rows: int


@dataclass(frozen=True)
class Report:
    """One evaluation of ``model`` on ``window`` of ``dataset``; ``passed`` when every gate passed."""

    report_id: str
    model: ModelKey
    passed: bool
    gates: tuple[GateResult, ...]
    candidate_metrics: tuple[MetricPoint, ...]
    dataset: DatasetVersion
    window: Window
    created_at: datetime
    # The champion it was compared with (None: none, or not comparable).
    champion: ModelKey | None = None
    champion_metrics: tuple[MetricPoint, ...] = ()
    # By value of the fairness attribute.
    slices: Mapping[str, SliceMetrics] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainedVersion:
    """A newly trained version to evaluate (from ``ModelTrained``)."""

    model: ModelKey
    # The end of its training window: its holdout starts no earlier (None: unknown).
    trained_until: datetime | None = None
