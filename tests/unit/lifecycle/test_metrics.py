"""Quality, calibration and fairness metrics against hand-computed values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from libs.lifecycle import metrics as m

pytestmark = pytest.mark.timeout(30)


def brute_auc(y: list[int], s: list[float]) -> float:
    pos = [b for a, b in zip(y, s, strict=True) if a == 1]
    neg = [b for a, b in zip(y, s, strict=True) if a == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_matches_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).tolist()
    s = np.round(rng.uniform(size=200), 1).tolist()  # many ties
    assert m.auc(np.array(y), np.array(s)) == pytest.approx(brute_auc(y, s))
    assert m.auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert math.isnan(m.auc(np.array([1, 1]), np.array([0.3, 0.4])))


def test_accuracy_f1_mae_rmse() -> None:
    y, p = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
    assert m.accuracy(y, p) == pytest.approx(4 / 6)
    # per class F1: c0: tp1 fp1 fn1 → 0.5; c1: tp2 fp1 fn0 → 0.8; c2: tp1 fp0 fn1 → 2/3
    assert m.f1_macro(y, p) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m.mae(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == 1.5
    assert m.rmse(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(math.sqrt(2.5))
    assert math.isnan(m.accuracy(np.array([]), np.array([])))


def test_ece_is_zero_when_calibrated_and_the_gap_when_not() -> None:
    # 10 rows at P(1)=0.3 with 3 positives; 10 rows at 0.8 with 8 positives: perfectly calibrated.
    p1 = np.array([0.3] * 10 + [0.8] * 10)
    y = np.array([1] * 3 + [0] * 7 + [1] * 8 + [0] * 2)
    proba = np.stack([1 - p1, p1], axis=1)
    assert m.expected_calibration_error(y, proba) == pytest.approx(0.0, abs=1e-12)
    # Overconfident: says 0.9 where the rate is 0.5 → ECE 0.4.
    p1 = np.full(10, 0.9)
    y = np.array([1] * 5 + [0] * 5)
    assert m.expected_calibration_error(y, np.stack([1 - p1, p1], axis=1)) == pytest.approx(0.4)


def test_ece_multiclass_uses_top_probability_against_accuracy() -> None:
    proba = np.array([[0.6, 0.3, 0.1]] * 10)
    y = np.array([0] * 6 + [1] * 4)
    assert m.expected_calibration_error(y, proba) == pytest.approx(0.0, abs=1e-12)
    y = np.array([1] * 10)
    assert m.expected_calibration_error(y, proba) == pytest.approx(0.6)


def test_demographic_parity_difference() -> None:
    pred = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    groups = ["f", "f", "f", "f", "m", "m", "m", "m"]
    gap, rates = m.demographic_parity_difference(pred, groups)
    assert gap == pytest.approx(0.25) and rates == {"f": 0.5, "m": 0.25}
    gap, _ = m.demographic_parity_difference(pred, ["f"] * 8)
    assert gap == 0.0
    # Missing group values are left out.
    gap, rates = m.demographic_parity_difference(np.array([1, 0, 1]), ["f", None, "m"])
    assert gap == 0.0 and set(rates) == {"f", "m"}
    # Multiclass: the class with the largest gap.
    gap, _ = m.demographic_parity_difference(np.array([2, 2, 0, 0]), ["a", "a", "b", "b"], n_classes=3)
    assert gap == 1.0


def test_quality_dispatch_reads_the_right_output() -> None:
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    y = np.array([0, 1, 1])
    assert m.quality("auc", y, proba) == 1.0
    assert m.quality("accuracy", y, proba) == pytest.approx(2 / 3)
    assert m.quality("mae", np.array([1.0, 3.0]), np.array([[2.0], [3.0]])) == 0.5
    with pytest.raises(ValueError):
        m.quality("nope", y, proba)
