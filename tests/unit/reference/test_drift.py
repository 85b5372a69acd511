"""Drift statistics: PSI with smoothing, KS and chi-square, on crafted distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from libs.reference import (
    MISSING,
    bin_counts,
    categories_of,
    category_counts,
    chi2_test,
    chi2_two_sample,
    ks_test,
    psi,
)

pytestmark = pytest.mark.timeout(30)


def test_bin_counts_outer_bins_are_open_and_nan_is_not_counted() -> None:
    edges = [0.0, 1.0, 2.0, 3.0]
    counts = bin_counts([-5.0, 0.0, 0.5, 1.0, 2.5, 3.0, 99.0, math.nan], edges)
    # bins: (-inf,1) [1,2) [2,+inf)
    assert counts.tolist() == [3, 1, 3]


def test_psi_is_zero_for_the_same_distribution_and_grows_with_shift() -> None:
    assert psi([10, 20, 30, 40], [1, 2, 3, 4]) == pytest.approx(0.0, abs=1e-12)
    small = psi([25, 25, 25, 25], [22, 28, 24, 26])
    large = psi([25, 25, 25, 25], [5, 10, 25, 60])
    assert 0 < small < 0.1 < 0.2 < large


def test_psi_stays_finite_with_an_empty_bin_thanks_to_epsilon() -> None:
    value = psi([50, 50, 0], [0, 50, 50])
    assert math.isfinite(value) and value > 1.0
    # Smoothing: a larger epsilon shrinks the empty-bin term.
    assert psi([50, 50, 0], [0, 50, 50], eps=1e-2) < value


def test_psi_matches_the_textbook_formula() -> None:
    e, a = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.2, 0.2, 0.2, 0.4])
    expected = float(np.sum((a - e) * np.log(a / e)))
    assert psi(e, a) == pytest.approx(expected, rel=1e-9)


def test_ks_same_distribution_high_p_shifted_low_p() -> None:
    rng = np.random.default_rng(0)
    ref, live = rng.normal(size=2000), rng.normal(0.5, 1, size=500)
    same = ks_test(ref, rng.normal(size=500))
    shifted = ks_test(ref, live)
    assert same.p_value > 0.01 and shifted.p_value < 1e-6
    assert (
        shifted.statistic == pytest.approx(stats.ks_2samp(ref, live).statistic) and shifted.sample_size == 500
    )


def test_ks_drops_nan_and_handles_empty_live_window() -> None:
    assert ks_test([1.0, 2.0, math.nan], [math.nan]).p_value == 1.0
    r = ks_test([1.0, 2.0, 3.0, math.nan], [1.0, 2.0, 3.0])
    assert r.statistic == 0.0 and r.sample_size == 3


def test_chi2_against_reference_frequencies() -> None:
    ref = {"a": 0.5, "b": 0.3, "c": 0.2}
    same = chi2_test(ref, {"a": 250, "b": 150, "c": 100})
    changed = chi2_test(ref, {"a": 100, "b": 150, "c": 250})
    assert same.statistic == pytest.approx(0.0) and same.p_value == pytest.approx(1.0)
    assert changed.p_value < 1e-10 and changed.sample_size == 500


def test_chi2_new_category_is_smoothed_not_a_division_by_zero() -> None:
    r = chi2_test({"a": 0.5, "b": 0.5}, {"a": 40, "b": 40, "new": 20})
    assert math.isfinite(r.statistic) and r.p_value < 1e-6


def test_chi2_two_sample_homogeneity() -> None:
    same = chi2_two_sample({"a": 500, "b": 500}, {"a": 50, "b": 50})
    diff = chi2_two_sample({"a": 500, "b": 500}, {"a": 90, "b": 10})
    assert same.p_value == pytest.approx(1.0) and diff.p_value < 1e-6
    assert chi2_two_sample({"a": 5}, {"a": 5}).p_value == 1.0  # one category: nothing to test


def test_one_hot_rows_map_to_categories_with_missing() -> None:
    onehot = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0], [np.nan, np.nan, np.nan]], dtype=float)
    assert categories_of(onehot, ["x", "y", "z"]) == ["x", "z", MISSING, MISSING]
    assert category_counts(onehot, ["x", "y", "z"]) == {"x": 1, "z": 1, MISSING: 2}
