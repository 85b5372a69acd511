"""The training-set contract: windows from the newest labelled example, label encoding, order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from libs.errors import FailedPrecondition, InvalidArgument
from libs.lifecycle.frames import (
    Window,
    canonical_order,
    check_columns,
    encode_labels,
    feature_matrix,
    plan_windows,
    select,
)
from tests.training_sets import loan_frame, regression_usecase, usecase

pytestmark = pytest.mark.timeout(30)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_windows_keep_the_holdout_away_from_training() -> None:
    uc = usecase("loan_approval")  # holdout 5m, training window 30d
    frame = loan_frame(3000, interval=timedelta(seconds=4))
    frame.loc[frame.index[-5:], "label"] = None  # unlabelled newest rows do not count
    w = plan_windows(frame, uc)
    newest = frame["event_time"].iloc[-6].to_pydatetime()
    assert w.newest == newest
    assert w.holdout.start == newest - uc.evaluation.holdout == w.training.end
    assert w.training.start == w.training.end - timedelta(days=30)
    train, hold = select(frame, w.training), select(frame, w.holdout)
    assert train["event_time"].max() < hold["event_time"].min()
    assert len(train) + len(hold) == len(frame) - 5  # the unlabelled tail is in neither


def test_no_labels_is_a_failed_precondition() -> None:
    frame = loan_frame(10)
    frame["label"] = None
    with pytest.raises(FailedPrecondition):
        plan_windows(frame, usecase("loan_approval"))


def test_window_must_be_aware_and_ordered() -> None:
    with pytest.raises(ValueError):
        Window(datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError):
        Window(T0 + timedelta(1), T0)


def test_labels_encode_whatever_spelling_the_store_used() -> None:
    uc = usecase("loan_approval")  # classes [0, 1]
    assert encode_labels([0, 1, 1.0, "1", "0", np.int64(1), True], uc).tolist() == [0, 1, 1, 1, 0, 1, 1]
    seg = usecase("image_segments")
    assert encode_labels(["sky", "grass"], seg).tolist() == [1, 6]
    with pytest.raises(InvalidArgument) as info:
        encode_labels(["sky", "lava"], seg)
    assert info.value.field == "training_set.label" and "lava" in info.value.message
    assert encode_labels([1.5, "2"], regression_usecase()).tolist() == [1.5, 2.0]


def test_missing_column_is_named() -> None:
    frame = loan_frame(10).drop(columns=["loan_to_salary"])
    with pytest.raises(InvalidArgument) as info:
        check_columns(frame, usecase("loan_approval"))
    assert info.value.field == "training_set.loan_to_salary"


def test_canonical_order_and_feature_matrix() -> None:
    uc = usecase("loan_approval")
    frame = loan_frame(50)
    shuffled = frame.sample(frac=1, random_state=3)
    pd.testing.assert_frame_equal(canonical_order(shuffled), canonical_order(frame))
    matrix = feature_matrix(frame, uc)
    assert matrix.dtype == np.float32 and matrix.shape == (50, len(uc.model_inputs()))
