"""Features → INPUT row (inline one-hot either way, errors naming the field) and OUTPUT → values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from libs.errors import InvalidArgument
from libs.usecase import load_default
from services.gateway.inputs import InputSchema, Scalar, from_value, same_category, to_value

UCS = load_default()
LOAN = InputSchema(UCS["loan_approval"])
SEGMENTS = InputSchema(UCS["image_segments"])


def loan_features(**over: Scalar) -> dict[str, Scalar]:
    base: dict[str, Scalar] = {
        "salary": 50_000.0,
        "commission": 0.0,
        "age": 40,
        "elevel": 2,
        "car": 3,
        "zipcode": 8,
        "hvalue": 100_000.0,
        "hyears": 5,
        "loan": 20_000.0,
        "loan_to_salary": 0.4,
        "applications_10m": 1,
        "loan_mean_10m": 20_000.0,
        "loan_max_10m": 20_000.0,
    }
    base.update(over)
    return base


def test_columns_follow_model_inputs_order() -> None:
    assert LOAN.columns == UCS["loan_approval"].model_inputs() and LOAN.width == 25


def test_raw_one_hot_value_is_expanded() -> None:
    row = LOAN.row(loan_features())
    assert row.dtype == np.float32 and row.shape == (25,)
    elevel = [row[LOAN.index[f"elevel__{c}"]] for c in range(5)]
    assert elevel == [0, 0, 1, 0, 0]
    assert row[LOAN.index["zipcode__8"]] == 1 and row[LOAN.index["zipcode__0"]] == 0
    assert row[LOAN.index["salary"]] == 50_000


def test_expanded_columns_are_accepted_and_match() -> None:
    raw = LOAN.row(loan_features())
    expanded = {c: float(v) for c, v in zip(LOAN.columns, raw.tolist(), strict=True)}
    np.testing.assert_array_equal(LOAN.row(expanded), raw)


@pytest.mark.parametrize(
    ("features", "field"),
    [
        (loan_features(elevel=7), "features.elevel"),
        (loan_features(salary="high"), "features.salary"),
        (loan_features(unknown=1.0), "features.unknown"),
        ({k: v for k, v in loan_features().items() if k != "car"}, "features.car"),
        ({k: v for k, v in loan_features().items() if k != "zipcode"}, "features.zipcode"),
        (loan_features(salary=float("inf")), "features.salary"),
        ({**loan_features(), "elevel__2": 1.0}, "features.elevel__2"),
    ],
)
def test_bad_features_name_the_field(features: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        LOAN.row(features)  # type: ignore[arg-type]
    assert err.value.field == field


def test_null_means_missing_and_bool_is_a_number() -> None:
    row = LOAN.row(loan_features(salary=None, zipcode=None, commission=True))
    assert math.isnan(row[LOAN.index["salary"]]) and row[LOAN.index["commission"]] == 1.0
    assert all(math.isnan(row[LOAN.index[f"zipcode__{c}"]]) for c in range(9))


def test_enum_categories_compare_as_typed() -> None:
    assert same_category(2, 2.0) and same_category(2, "2") and not same_category(2, 2.5)
    assert same_category("sky", "sky") and not same_category(True, 1)
    assert not same_category(2, "²") and not same_category(3, "٣")  # ASCII digits only
    assert LOAN.row(loan_features(elevel="3"))[LOAN.index["elevel__3"]] == 1


def test_complete_counts_raw_one_hot_features() -> None:
    assert LOAN.complete(loan_features())
    assert not LOAN.complete({k: v for k, v in loan_features().items() if k != "elevel"})


def test_outputs_per_task() -> None:
    primary, named = LOAN.outputs(np.array([0.3, 0.7], dtype=np.float32))
    assert primary == pytest.approx(0.7) and named["label"] == 1 and named["p_0"] == pytest.approx(0.3)
    probs = np.zeros(7, dtype=np.float32)
    probs[1] = 1.0
    primary, named = SEGMENTS.outputs(probs)
    assert (
        primary == "sky"
        and named["label"] == "sky"
        and set(named) == {*(f"p_{c}" for c in UCS["image_segments"].label.classes or ()), "label"}
    )


def test_values_round_trip() -> None:
    for value in (None, True, 3, 2.5, "x"):
        assert from_value(to_value(value)) == value
