"""Reference statistics built from a training split: shape, sampling, JSON, and drift against them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from libs.reference import build_reference, category_counts, chi2_against, ks_against, psi_against
from tests.training_sets import loan_frame, regression_frame, regression_usecase, segment_frame, usecase

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def loan():  # type: ignore[no-untyped-def]
    uc = usecase("loan_approval")
    frame = loan_frame(3000)
    frame.loc[::10, "salary"] = np.nan  # missing values are counted, not binned
    rng = np.random.default_rng(1)
    p1 = rng.uniform(size=len(frame))
    predictions = np.stack([1 - p1, p1], axis=1)
    return uc, frame, predictions


def test_reference_has_every_input_once_numeric_or_categorical(loan) -> None:  # type: ignore[no-untyped-def]
    uc, frame, predictions = loan
    ref = build_reference(frame, uc, predictions, quality={"value": 0.9, "rows": 100}, seed=3)
    assert set(ref["features"]) == {
        "salary",
        "commission",
        "age",
        "elevel",
        "car",
        "zipcode",
        "hvalue",
        "hyears",
        "loan",
        "loan_to_salary",
        "applications_10m",
        "loan_mean_10m",
        "loan_max_10m",
    }
    elevel = ref["features"]["elevel"]
    assert elevel["kind"] == "categorical" and elevel["columns"] == [f"elevel__{i}" for i in range(5)]
    assert sum(elevel["frequencies"].values()) == pytest.approx(1.0)
    assert sum(elevel["counts"].values()) == len(frame)
    salary = ref["features"]["salary"]
    assert salary["kind"] == "numeric" and salary["missing"] == 300 and salary["count"] == 3000
    assert sum(salary["histogram"]["counts"]) == 2700
    assert len(salary["sample"]) == 2000 and salary["quantiles"]["0.5"] == pytest.approx(
        float(np.nanmedian(frame["salary"]))
    )
    assert ref["prediction"]["kind"] == "binary" and ref["prediction"]["output"] == "p_1"
    assert ref["quality"] == {
        "metric": "auc",
        "value": 0.9,
        "split": "validation",
        "higher_is_better": True,
        "rows": 100,
    }
    json.dumps(ref, allow_nan=False)  # JSON-able, no NaN


def test_sample_is_seeded_and_bounded(loan) -> None:  # type: ignore[no-untyped-def]
    uc, frame, predictions = loan
    a = build_reference(frame, uc, predictions, seed=3)["features"]["loan"]["sample"]
    b = build_reference(frame, uc, predictions, seed=3)["features"]["loan"]["sample"]
    c = build_reference(frame, uc, predictions, seed=4)["features"]["loan"]["sample"]
    assert a == b and a != c and len(a) == 2000


def test_constant_and_all_missing_columns_do_not_break_it(loan) -> None:  # type: ignore[no-untyped-def]
    uc, frame, predictions = loan
    frame = frame.copy()
    frame["commission"] = np.nan
    ref = build_reference(frame, uc, predictions)
    assert ref["features"]["applications_10m"]["histogram"] == {"edges": [0.0, 0.0], "counts": [3000]}
    assert ref["features"]["commission"]["mean"] is None and ref["features"]["commission"]["sample"] == []
    json.dumps(ref, allow_nan=False)


def test_live_data_like_training_shows_no_drift_and_shifted_data_does(loan) -> None:  # type: ignore[no-untyped-def]
    uc, frame, predictions = loan
    ref = build_reference(frame.iloc[:2000], uc, predictions[:2000])
    live = frame.iloc[2000:]
    assert psi_against(ref["features"]["loan"], live["loan"]) < 0.05
    assert ks_against(ref["features"]["loan"], live["loan"]).p_value > 0.001
    shifted = live["loan"] * 1.5 + 50_000
    assert psi_against(ref["features"]["loan"], shifted) > 0.2
    assert ks_against(ref["features"]["loan"], shifted).p_value < 1e-6
    entry = ref["features"]["elevel"]
    same = category_counts(live[entry["columns"]].to_numpy(), entry["categories"])
    assert chi2_against(entry, same).p_value > 0.001
    skewed = {"0": 900, "1": 20, "2": 20, "3": 30, "4": 30}
    assert chi2_against(entry, skewed).p_value < 1e-6


def test_multiclass_and_regression_prediction_summaries() -> None:
    uc = usecase("image_segments")
    frame = segment_frame(300)
    proba = np.eye(7)[np.arange(300) % 7] * 0.9 + 0.1 / 7
    ref = build_reference(frame, uc, proba)
    assert ref["prediction"]["kind"] == "multiclass"
    assert ref["prediction"]["frequencies"]["brickface"] == pytest.approx(43 / 300)
    ruc = regression_usecase()
    rframe = regression_frame(200)
    rref = build_reference(rframe, ruc, rframe[["label"]].to_numpy())
    assert rref["prediction"]["kind"] == "regression" and rref["prediction"]["mean"] == pytest.approx(
        rframe["label"].mean()
    )
