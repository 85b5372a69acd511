"""Distribution drift of one window of live predictions against a version's training reference.

Per numeric model input: PSI against the reference histogram and a two-sample KS test
against the reference sample; per one-hot group (a categorical input): chi-square of
the live category counts against the reference frequencies; for the primary output
(prediction drift): PSI and KS on P(class 1) (binary) or the prediction (regression),
chi-square on the predicted classes (multiclass). The reference is the document
:func:`libs.reference.build_reference` writes; thresholds come from the spec's ``drift``.

A feature with fewer than ``min_samples`` non-missing live values in the window is not
tested (no evidence), so a sparse feature cannot alarm on noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from libs.reference import category_counts, chi2_against, chi2_test, ks_against, psi_against
from libs.usecase import UseCase
from services.monitor.domain import Evidence, EvidenceKind, Prediction


def _finite(value: float) -> float:
    # Evidence is stored and sent as JSON/protobuf doubles: keep it finite.
    return value if math.isfinite(value) else 0.0


def numeric_evidence(
    name: str,
    entry: Mapping[str, Any],
    live: np.ndarray,
    uc: UseCase,
    kind: EvidenceKind,
    start: datetime,
    end: datetime,
) -> list[Evidence]:
    values = live[np.isfinite(live)]
    n = len(values)
    if n < uc.drift.min_samples or not entry.get("sample"):
        return []
    spec = uc.drift
    value = psi_against(entry, values)
    ks = ks_against(entry, values)
    p = ks.p_value if ks.p_value is not None else 1.0
    return [
        Evidence(
            name, "psi", _finite(value), spec.psi_threshold, start, end, n, kind, value > spec.psi_threshold
        ),
        Evidence(
            name,
            "ks",
            _finite(ks.statistic),
            spec.ks_pvalue,
            start,
            end,
            n,
            kind,
            p < spec.ks_pvalue,
            p_value=p,
        ),
    ]


def categorical_evidence(
    name: str,
    entry: Mapping[str, Any],
    counts: Mapping[str, int],
    uc: UseCase,
    kind: EvidenceKind,
    start: datetime,
    end: datetime,
) -> list[Evidence]:
    n = sum(counts.values())
    if n < uc.drift.min_samples:
        return []
    result = chi2_against(entry, counts) if "frequencies" in entry else chi2_test({}, counts)
    p = result.p_value if result.p_value is not None else 1.0
    return [
        Evidence(
            name,
            "chi2",
            _finite(result.statistic),
            uc.drift.chi2_pvalue,
            start,
            end,
            n,
            kind,
            p < uc.drift.chi2_pvalue,
            p_value=p,
        )
    ]


def window_evidence(
    uc: UseCase, reference: Mapping[str, Any], window: Sequence[Prediction]
) -> list[Evidence]:
    """Every drift statistic of ``window`` (non-empty) against ``reference``."""
    start, end = window[0].at, window[-1].at
    out: list[Evidence] = []
    features: Mapping[str, Any] = reference.get("features") or {}

    def column(name: str) -> np.ndarray:
        return np.array([_num(p.features.get(name)) for p in window], dtype=np.float64)

    for name, entry in features.items():
        if not isinstance(entry, Mapping):
            continue
        if entry.get("kind") == "categorical":
            columns, categories = list(entry.get("columns") or ()), list(entry.get("categories") or ())
            if not columns or not all(c in window[0].features for c in columns):
                continue
            matrix = np.stack([column(c) for c in columns], axis=1)
            counts = category_counts(matrix, categories)
            out += categorical_evidence(name, entry, counts, uc, EvidenceKind.FEATURE, start, end)
        elif entry.get("kind") == "numeric" and name in window[0].features:
            out += numeric_evidence(name, entry, column(name), uc, EvidenceKind.FEATURE, start, end)
    out += prediction_evidence(uc, reference.get("prediction") or {}, window)
    return out


def prediction_evidence(
    uc: UseCase, entry: Mapping[str, Any], window: Sequence[Prediction]
) -> list[Evidence]:
    if not entry:
        return []
    start, end = window[0].at, window[-1].at
    kind = EvidenceKind.PREDICTION
    if uc.task == "multiclass":
        classes = [str(c) for c in uc.label.classes or ()]
        counts: dict[str, int] = {}
        for p in window:
            if p.predicted is not None and 0 <= p.predicted < len(classes):
                label = classes[p.predicted]
                counts[label] = counts.get(label, 0) + 1
        return categorical_evidence("predicted_class", entry, counts, uc, kind, start, end)
    name = str(entry.get("output") or uc.label.field)
    scores = np.array([_num(p.score) for p in window], dtype=np.float64)
    return numeric_evidence(name, entry, scores, uc, kind, start, end)


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)
