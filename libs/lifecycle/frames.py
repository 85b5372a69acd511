"""The training-set frame contract and the time windows cut from it.

A training set (what the feature store's ``StreamTrainingSet`` sends) has the
columns ``entity_id`` (str), ``event_time`` (UTC), ``label_time``, ``label`` (class value
or float) and then ``uc.model_inputs()`` as float64, NaN for a missing value. Extra
columns may follow (the evaluator reads the fairness attribute from one).

Windows are event-time intervals ``[start, end)``. The newest ``uc.evaluation.holdout``
of labelled data is the evaluator's and is never given to training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from libs.errors import FailedPrecondition, InvalidArgument
from libs.usecase import UseCase

ENTITY_ID = "entity_id"
EVENT_TIME = "event_time"
LABEL_TIME = "label_time"
LABEL = "label"
KEY_COLUMNS = (ENTITY_ID, EVENT_TIME, LABEL_TIME, LABEL)

# Smallest step past the newest event, so a half-open window still contains it.
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Window:
    """A half-open event-time interval ``[start, end)`` (both tz-aware UTC)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")


@dataclass(frozen=True)
class Windows:
    """Where training data ends and the holdout begins, planned from the newest labelled example."""

    training: Window
    holdout: Window
    newest: datetime


def check_columns(frame: pd.DataFrame, uc: UseCase) -> None:
    """Raise ``InvalidArgument`` naming the first column the contract needs and the frame lacks."""
    for column in (*KEY_COLUMNS, *uc.model_inputs()):
        if column not in frame.columns:
            raise InvalidArgument(f"training_set.{column}", "column missing from the training set")


def canonical_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by event time, then entity, then label time: one order for the same
    data however the store returned it (reproducible training needs that)."""
    frame = frame.copy()
    frame[EVENT_TIME] = pd.to_datetime(frame[EVENT_TIME], utc=True)
    if LABEL_TIME in frame.columns:
        frame[LABEL_TIME] = pd.to_datetime(frame[LABEL_TIME], utc=True)
    keys = [c for c in (EVENT_TIME, ENTITY_ID, LABEL_TIME) if c in frame.columns]
    return frame.sort_values(keys, kind="mergesort").reset_index(drop=True)


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose label is known."""
    return frame[frame[LABEL].notna()].reset_index(drop=True)


def plan_windows(frame: pd.DataFrame, uc: UseCase) -> Windows:
    """Training window ``[newest - holdout - training.window, newest - holdout)`` and holdout
    window ``[newest - holdout, newest]`` from the newest labelled example's event time."""
    rows = labelled(frame)
    if rows.empty:
        raise FailedPrecondition(f"{uc.name}: no labelled examples yet")
    newest = pd.to_datetime(rows[EVENT_TIME], utc=True).max().to_pydatetime()
    cut = newest - uc.evaluation.holdout
    return Windows(
        training=Window(cut - uc.training.window, cut), holdout=Window(cut, newest + _TICK), newest=newest
    )


def select(frame: pd.DataFrame, window: Window) -> pd.DataFrame:
    """The rows whose event time falls in ``window``."""
    times = pd.to_datetime(frame[EVENT_TIME], utc=True)
    mask = (times >= pd.Timestamp(window.start)) & (times < pd.Timestamp(window.end))
    return frame[mask].reset_index(drop=True)


def feature_matrix(frame: pd.DataFrame, uc: UseCase) -> np.ndarray:
    """``uc.model_inputs()`` as a float32 matrix in model-input order (NaN kept)."""
    columns = uc.model_inputs()
    try:
        return frame[columns].to_numpy(dtype=np.float64).astype(np.float32)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument("training_set", f"model inputs are not numeric: {exc}") from None


def _class_key(value: object) -> str:
    """One spelling per class value: 1, 1.0, "1", True and np.int64(1) are the same class."""
    if isinstance(value, bool | np.bool_):
        return str(int(bool(value)))  # a bool column and classes [0, 1] (or [false, true]) agree
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return {"true": "1", "false": "0"}.get(text.lower(), text)
    return str(int(number)) if number.is_integer() else repr(number)


def class_names(uc: UseCase) -> list[str]:
    """Class values as strings, in class-index order (empty for regression)."""
    return [_class_key(c) for c in uc.label.classes or ()]


def encode_labels(labels: Sequence[object] | pd.Series, uc: UseCase) -> np.ndarray:
    """Class values → class indices (int64) for classification; floats for regression.

    Raises ``InvalidArgument`` naming the first value that is not a declared class.
    """
    if uc.task == "regression":
        try:
            return np.asarray(pd.to_numeric(pd.Series(labels)), dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument("training_set.label", f"regression labels must be numbers: {exc}") from None
    index = {k: i for i, k in enumerate(class_names(uc))}
    out = np.empty(len(labels), dtype=np.int64)
    for i, value in enumerate(labels):
        key = _class_key(value)
        if key not in index:
            raise InvalidArgument(
                "training_set.label", f"{value!r} is not one of the classes {uc.label.classes}"
            )
        out[i] = index[key]
    return out
