"""Scores: what the evaluator measures of one model's quality on one labelled window.

The metric functions themselves (AUC, accuracy, macro F1, MAE, RMSE, ECE, demographic
parity difference) live in :mod:`libs.lifecycle.metrics`, shared with the trainer's
validation and the monitor's live quality; this module assembles them per use case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from libs.lifecycle import metrics as m
from libs.usecase import UseCase


@dataclass(frozen=True)
class SliceResult:
    values: dict[str, float]
    rows: int


@dataclass(frozen=True)
class MetricSet:
    """Metrics of one model on the holdout."""

    # The use case's metric and the standard ones for its task, by name.
    values: dict[str, float]
    rows: int
    # Expected calibration error (classification only).
    ece: float | None = None
    # Demographic parity difference across the fairness attribute; None when not measured.
    parity_gap: float | None = None
    parity_rates: dict[str, float] = field(default_factory=dict)
    slices: dict[str, SliceResult] = field(default_factory=dict)

    @property
    def primary(self) -> float:
        return next(iter(self.values.values()))


def measure(
    uc: UseCase, y_true: np.ndarray, output: np.ndarray, groups: Sequence[object] | None = None
) -> MetricSet:
    """Every metric of ``output`` (the artifact's raw output) against ``y_true`` (encoded).

    ``groups`` is the fairness attribute per row, when the holdout carries it.
    """
    metric = uc.evaluation.metric
    values: dict[str, float] = {metric: m.quality(metric, y_true, output) if len(y_true) else float("nan")}
    values.update(
        {k: v for k, v in m.standard_metrics(uc.task, y_true, output).items() if k != metric}
        if len(y_true)
        else {}
    )
    if uc.task == "regression":
        return MetricSet(values, len(y_true), slices=_slices(uc, y_true, output, groups))
    ece = m.expected_calibration_error(y_true, output) if len(y_true) else None
    gap: float | None = None
    rates: dict[str, float] = {}
    if groups is not None and len(y_true):
        gap, rates = m.demographic_parity_difference(
            m.predicted_classes(output), groups, n_classes=output.shape[1]
        )
    return MetricSet(
        values,
        len(y_true),
        ece=ece,
        parity_gap=gap,
        parity_rates=rates,
        slices=_slices(uc, y_true, output, groups),
    )


def _slices(
    uc: UseCase, y_true: np.ndarray, output: np.ndarray, groups: Sequence[object] | None
) -> dict[str, SliceResult]:
    """The use case's metric (and, for classification, the positive/top-class rate) per group."""
    if groups is None or not len(y_true):
        return {}
    keys = np.array(
        ["" if g is None or (isinstance(g, float) and np.isnan(g)) else str(g) for g in groups], dtype=object
    )
    out: dict[str, SliceResult] = {}
    for key in sorted(set(keys.tolist()) - {""}):
        mask = keys == key
        values: dict[str, float] = {
            uc.evaluation.metric: m.quality(uc.evaluation.metric, y_true[mask], output[mask])
        }
        if uc.task != "regression":
            values["positive_rate"] = float(np.mean(m.predicted_classes(output[mask]) == 1))
        out[key] = SliceResult(values, int(mask.sum()))
    return out
