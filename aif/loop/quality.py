"""Quality of served predictions, measured by the driver from the outcomes it knows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Served:
    prediction_id: str
    version: int
    probability: float  # P(approved)
    label: int
    drifted: bool
    at: float  # monotonic clock when the answer came back


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by ranks (ties averaged); NaN with a single class."""
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def phase_quality(served: Sequence[Served]) -> dict[str, float]:
    if not served:
        return {}
    p = np.array([s.probability for s in served])
    y = np.array([s.label for s in served])
    return {"n": float(len(served)), "accuracy": float(((p >= 0.5) == (y == 1)).mean()), "auc": auc(p, y)}
