"""Row transforms: each definition, nulls, division by zero, one-hot expansion."""

from __future__ import annotations

import math

import pytest

from libs.features import FeatureError, row_features, to_number
from libs.usecase import load_default

UC = load_default()["loan_approval"]
RECORD = {
    "salary": 50_000.0,
    "commission": 0.0,
    "age": 40,
    "elevel": 2,
    "car": 3,
    "zipcode": 7,
    "hvalue": 250_000.0,
    "hyears": 10,
    "loan": 100_000.0,
}


def test_identity_and_ratio() -> None:
    row = row_features(UC, RECORD)
    assert row["salary"] == 50_000.0 and row["age"] == 40.0
    assert row["loan_to_salary"] == pytest.approx(2.0)


def test_ratio_by_zero_is_zero_and_null_in_gives_null() -> None:
    assert row_features(UC, {**RECORD, "salary": 0.0})["loan_to_salary"] == 0.0
    assert row_features(UC, {**RECORD, "salary": None})["loan_to_salary"] is None
    assert row_features(UC, {**RECORD, "loan": None})["loan"] is None


def test_one_hot_expands_in_enum_order_and_unknown_is_all_zero() -> None:
    row = row_features(UC, RECORD)
    assert [row[f"elevel__{c}"] for c in range(5)] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert sum(row[f"zipcode__{c}"] for c in range(9)) == 1.0 and row["zipcode__7"] == 1.0
    unknown = row_features(UC, {**RECORD, "elevel": 9, "zipcode": None})
    assert [unknown[f"elevel__{c}"] for c in range(5)] == [0.0] * 5
    assert all(unknown[f"zipcode__{c}"] == 0.0 for c in range(9))
    # A float that equals an int category still matches it.
    assert row_features(UC, {**RECORD, "elevel": 3.0})["elevel__3"] == 1.0
    assert list(row_features(UC, RECORD)) == UC.model_inputs()[: len(row)]


def test_log1p_and_its_domain() -> None:
    segments = load_default()["image_segments"]
    base = {f: 1.0 for f, spec in segments.fields.items() if spec.type == "float"}
    assert row_features(segments, {**base, "vegde_sd": math.e - 1})["vegde_sd_log"] == pytest.approx(1.0)
    assert row_features(segments, {**base, "vegde_sd": -1.0})["vegde_sd_log"] is None


def test_non_numbers_are_refused_naming_the_field() -> None:
    with pytest.raises(FeatureError, match="salary"):
        row_features(UC, {**RECORD, "salary": "lots"})
    with pytest.raises(FeatureError, match="finite"):
        to_number(float("inf"), "x")
    assert to_number(float("nan")) is None and to_number(True) == 1.0
