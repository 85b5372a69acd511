"""Training-set frames built straight from aif.datagen streams, for tests and benchmarks.

The same columns as the feature store's training sets (``StreamTrainingSet``; see
libs.lifecycle.frames), computed the simple way: row features from the record, every
aggregate 0. The fairness attribute's raw value is added as a column when the use
case declares one (the evaluator reads it from there).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable
from datetime import timedelta

import numpy as np
import pandas as pd

from aif.datagen import Example, LoanStream, SegmentStream
from libs.usecase import UseCase, load_default


def usecase(name: str) -> UseCase:
    return load_default()[name]


def _row_features(uc: UseCase, record: dict[str, object]) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in uc.features.row:
        value = record.get(f.source)
        if f.transform == "one_hot":
            for c in uc.fields[f.source].enum or ():
                out[f"{f.name}__{c}"] = float(value is not None and str(value) == str(c))
            continue
        x = math.nan if value is None else float(value)  # type: ignore[arg-type]
        if f.transform == "log1p":
            x = math.log1p(x)
        elif f.transform == "ratio":
            other = float(record.get(f.other) or 0.0)  # type: ignore[arg-type]
            x = x / other if other else math.nan
        out[f.name] = x
    for a in uc.features.aggregates:
        out[a.name] = 0.0
    return out


def frame_from_examples(uc: UseCase, examples: Iterable[Example]) -> pd.DataFrame:
    rows = []
    attribute = uc.evaluation.fairness.attribute if uc.evaluation.fairness else None
    for ex in examples:
        row: dict[str, object] = {
            "entity_id": ex.entity_id,
            "event_time": ex.event_time,
            "label_time": ex.label_time,
            "label": ex.label,
        }
        row.update(_row_features(uc, ex.record))
        if attribute is not None:
            row[attribute] = ex.record.get(attribute)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["label_time"] = pd.to_datetime(frame["label_time"], utc=True)
    columns = uc.model_inputs()
    frame[columns] = frame[columns].astype(np.float64)
    return frame


def loan_frame(
    n: int = 3000, seed: int = 7, *, drift_at: int | None = None, interval: timedelta = timedelta(seconds=1)
) -> pd.DataFrame:
    return _loan_frame(n, seed, drift_at, interval).copy()


@functools.lru_cache(maxsize=16)
def _loan_frame(n: int, seed: int, drift_at: int | None, interval: timedelta) -> pd.DataFrame:
    uc = usecase("loan_approval")
    return frame_from_examples(
        uc, itertools.islice(LoanStream(seed=seed, drift_at=drift_at, interval=interval), n)
    )


def segment_frame(n: int = 2310, seed: int = 11) -> pd.DataFrame:
    return _segment_frame(n, seed).copy()


@functools.lru_cache(maxsize=4)
def _segment_frame(n: int, seed: int) -> pd.DataFrame:
    uc = usecase("image_segments")
    return frame_from_examples(uc, SegmentStream(seed=seed, limit=n))


def regression_usecase() -> UseCase:
    """loan_approval turned into a regression of the loan amount's log on the other inputs."""
    uc = usecase("loan_approval")
    spec = uc.model_dump()
    spec["task"] = "regression"
    spec["label"] = {"field": "hvalue", "arrives": "record"}
    spec["evaluation"] = {"metric": "mae", "floor": 1e9, "holdout": uc.evaluation.holdout}
    spec["features"]["row"] = [f for f in spec["features"]["row"] if f["source"] != "hvalue"]
    return UseCase.model_validate(spec)


def regression_frame(n: int = 2000, seed: int = 3) -> pd.DataFrame:
    """Label: the house value (a function of the zipcode in Agrawal's generator)."""
    uc = regression_usecase()
    examples = list(itertools.islice(LoanStream(seed=seed), n))
    frame = frame_from_examples(uc, examples)
    frame["label"] = [float(ex.record["hvalue"]) / 1000.0 for ex in examples]
    return frame
