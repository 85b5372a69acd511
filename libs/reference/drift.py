"""Drift statistics: live data against a training reference. Pure functions.

- :func:`psi`: population stability index of two binned distributions, with epsilon
  smoothing so an empty bin does not make it infinite.
- :func:`ks_test`: two-sample Kolmogorov–Smirnov (scipy) for numeric features.
- :func:`chi2_test`: live category counts against reference frequencies (goodness of
  fit); :func:`chi2_two_sample` compares two count vectors (contingency table).

The ``*_against`` helpers take one entry of a reference built by
:func:`libs.reference.build_reference` and the live values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

EPSILON = 1e-4


@dataclass(frozen=True)
class StatResult:
    statistic: float
    p_value: float | None
    sample_size: int


def bin_counts(values: Sequence[float] | np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins ``edges`` define; the outer bins are open-ended,
    so live values beyond the training range still land in the first or last bin.
    NaN values are not counted."""
    cuts = np.asarray(edges, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    n_bins = max(len(cuts) - 1, 1)
    index = np.searchsorted(cuts[1:-1], values, side="right")
    return np.bincount(index, minlength=n_bins)[:n_bins].astype(np.int64)


def _proportions(counts: np.ndarray, eps: float) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    share = counts / total if total > 0 else np.full(len(counts), 1.0 / max(len(counts), 1))
    share = np.clip(share, eps, None)
    return share / share.sum()


def psi(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, eps: float = EPSILON
) -> float:
    """PSI = Σ (a − e) · ln(a / e) over bins, from counts (or proportions) of the same bins.

    Each proportion is floored at ``eps`` and renormalised, so a bin empty on one side
    adds a large but finite term. 0 means identical; > 0.2 is the usual alarm.
    """
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"bins differ: {e.shape} vs {a.shape}")
    if a.sum() == 0:
        return 0.0
    p, q = _proportions(e, eps), _proportions(a, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_test(reference: Sequence[float] | np.ndarray, live: Sequence[float] | np.ndarray) -> StatResult:
    """Two-sample KS statistic and p-value (NaN values dropped)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(live, dtype=np.float64)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(ref) == 0 or len(cur) == 0:
        return StatResult(0.0, 1.0, len(cur))
    result = stats.ks_2samp(ref, cur)
    return StatResult(float(result.statistic), float(result.pvalue), len(cur))


def chi2_test(
    reference_frequencies: Mapping[str, float], live_counts: Mapping[str, int], eps: float = EPSILON
) -> StatResult:
    """Goodness of fit of live category counts to the reference frequencies.

    Categories are the union of both sides; the expected share of a category the
    reference never saw is ``eps`` (smoothing), so a new category raises the
    statistic instead of dividing by zero.
    """
    categories = sorted(set(reference_frequencies) | set(live_counts))
    observed = np.array([live_counts.get(c, 0) for c in categories], dtype=np.float64)
    n = observed.sum()
    if n == 0 or len(categories) < 2:
        return StatResult(0.0, 1.0, int(n))
    expected_share = _proportions(np.array([reference_frequencies.get(c, 0.0) for c in categories]), eps)
    result = stats.chisquare(observed, expected_share * n)
    return StatResult(float(result.statistic), float(result.pvalue), int(n))


def chi2_two_sample(reference_counts: Mapping[str, int], live_counts: Mapping[str, int]) -> StatResult:
    """Chi-square test of homogeneity of two count vectors (categories empty on both sides dropped)."""
    categories = sorted(
        c
        for c in set(reference_counts) | set(live_counts)
        if reference_counts.get(c, 0) + live_counts.get(c, 0) > 0
    )
    live_n = int(sum(live_counts.get(c, 0) for c in categories))
    if len(categories) < 2 or live_n == 0 or sum(reference_counts.get(c, 0) for c in categories) == 0:
        return StatResult(0.0, 1.0, live_n)
    table = np.array(
        [[reference_counts.get(c, 0) for c in categories], [live_counts.get(c, 0) for c in categories]],
        dtype=np.float64,
    )
    statistic, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    return StatResult(float(statistic), float(p_value), live_n)


# -- against a reference entry -------------------------------------------------------


def psi_against(entry: Mapping[str, Any], live: Sequence[float] | np.ndarray, eps: float = EPSILON) -> float:
    """PSI of live values against a numeric reference entry's histogram."""
    histogram = entry["histogram"]
    return psi(histogram["counts"], bin_counts(live, histogram["edges"]), eps)


def ks_against(entry: Mapping[str, Any], live: Sequence[float] | np.ndarray) -> StatResult:
    """KS of live values against a numeric reference entry's bounded sample."""
    return ks_test(entry["sample"], live)


MISSING = "__missing__"


def categories_of(onehot: np.ndarray, categories: Sequence[str]) -> list[str]:
    """The category of each row of one-hot columns (in ``categories`` order); a row with
    no hot column (all 0 or NaN) is ``"__missing__"``. Build and live use this one rule."""
    matrix = np.nan_to_num(np.asarray(onehot, dtype=np.float64).reshape(-1, len(categories)), nan=0.0)
    if matrix.shape[0] == 0:
        return []
    hot = matrix.argmax(axis=1)
    present = matrix.max(axis=1) > 0.5
    return [categories[i] if ok else MISSING for i, ok in zip(hot.tolist(), present.tolist(), strict=True)]


def category_counts(onehot: np.ndarray, categories: Sequence[str]) -> dict[str, int]:
    """Counts per category from one-hot columns (see :func:`categories_of`)."""
    counts: dict[str, int] = {}
    for c in categories_of(onehot, categories):
        counts[c] = counts.get(c, 0) + 1
    return counts


def chi2_against(entry: Mapping[str, Any], live_counts: Mapping[str, int]) -> StatResult:
    """Chi-square of live category counts against a categorical reference entry."""
    return chi2_test(entry["frequencies"], live_counts)
