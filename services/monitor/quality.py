"""Live quality of a model version from its labelled predictions, and the decisions on it.

- :func:`live_metrics`: accuracy and AUC (binary), accuracy and macro-F1 (multiclass),
  MAE and RMSE (regression) of a window of labelled predictions.
- :func:`quality_evidence`: those metrics as evidence; the one the training reference
  holds (the spec's evaluation metric on the validation split) is compared with it:
  drifted when live quality is worse by more than ``drift.quality_drop`` (in metric
  units; relative for error metrics such as MAE).
- :func:`rollback_verdict`: after a promotion, is the new champion's live quality worse
  than the previous champion's by more than ``deployment.rollback_margin``?
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from libs.lifecycle.metrics import HIGHER_IS_BETTER, accuracy, auc, f1_macro, mae, rmse
from libs.usecase import UseCase
from services.monitor.domain import Evidence, EvidenceKind, Labelled


def live_metrics(task: str, window: Sequence[Labelled]) -> dict[str, float]:
    """The task's metrics over ``window``; an undefined one (AUC with one class) is left out."""
    if not window:
        return {}
    y = np.array([w.outcome.value for w in window], dtype=np.float64)
    if task == "regression":
        pred = np.array([w.prediction.score or 0.0 for w in window], dtype=np.float64)
        out = {"mae": mae(y, pred), "rmse": rmse(y, pred)}
    else:
        labels = y.astype(np.int64)
        predicted = np.array(
            [-1 if w.prediction.predicted is None else w.prediction.predicted for w in window]
        )
        out = {"accuracy": accuracy(labels, predicted)}
        if task == "binary":
            scores = np.array(
                [w.prediction.score if w.prediction.score is not None else math.nan for w in window],
                dtype=np.float64,
            )
            if np.isfinite(scores).all():
                out["auc"] = auc(labels == 1, scores)
        else:
            out["f1_macro"] = f1_macro(labels, predicted)
    return {k: v for k, v in out.items() if math.isfinite(v)}


def primary_metric(uc: UseCase) -> str:
    """The metric quality is judged on: the spec's evaluation metric."""
    return uc.evaluation.metric


def worst_acceptable(metric: str, reference_value: float, drop: float) -> float:
    """The live value beyond which quality has dropped by ``drop`` from ``reference_value``."""
    if HIGHER_IS_BETTER.get(metric, True):
        return reference_value - drop
    return reference_value * (1 + drop)


def is_worse(metric: str, value: float, bound: float) -> bool:
    return value < bound if HIGHER_IS_BETTER.get(metric, True) else value > bound


def quality_evidence(
    uc: UseCase, reference: Mapping[str, Any] | None, window: Sequence[Labelled]
) -> list[Evidence]:
    """The window's metrics as evidence (``window`` non-empty); only the reference's metric can drift."""
    metrics = live_metrics(uc.task, window)
    start, end = window[0].prediction.at, window[-1].prediction.at
    ref = (reference or {}).get("quality") or {}
    ref_metric, ref_value = ref.get("metric"), ref.get("value")
    out = []
    for name, value in metrics.items():
        if name == ref_metric and isinstance(ref_value, int | float):
            bound = worst_acceptable(name, float(ref_value), uc.drift.quality_drop)
            drifted = is_worse(name, value, bound)
        else:
            bound, drifted = math.nan, False
        out.append(
            Evidence(
                name,
                name,
                value,
                bound if math.isfinite(bound) else 0.0,
                start,
                end,
                len(window),
                EvidenceKind.PERFORMANCE,
                drifted,
            )
        )
    return out


@dataclass(frozen=True)
class RollbackVerdict:
    metric: str
    before: float
    after: float
    # Positive: the new champion is worse, in metric units.
    loss: float
    margin: float

    @property
    def worse(self) -> bool:
        return self.loss > self.margin


def rollback_verdict(metric: str, before: float, after: float, margin: float) -> RollbackVerdict:
    """Compare the new champion's live ``after`` with the previous one's ``before``."""
    loss = before - after if HIGHER_IS_BETTER.get(metric, True) else after - before
    return RollbackVerdict(metric, before, after, loss, margin)
