"""Prediction and feedback events of the loan-approval use case, built from aif.datagen.LoanStream.

A fixed "model" scores each record (a deterministic scorer, or any function of the
model-input row); the prediction is logged at the record's event time and its outcome
reported at the label time, as the gateway would. Used by the monitor's unit and
integration tests and by its benchmark.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from aif.datagen import LoanStream
from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import events_pb2 as gateway_events
from libs.lifecycle.metrics import auc
from libs.reference import build_reference
from libs.usecase import UseCase
from services.monitor.convert import ts
from services.monitor.domain import VersionKey
from tests.training_sets import frame_from_examples, loan_frame, usecase

USE_CASE = "loan_approval"
MODEL_V1 = VersionKey(USE_CASE, USE_CASE, 1)
# Scores the model-input frame: P(class 1) per row.
Scorer = Callable[[pd.DataFrame], np.ndarray]


def loan_usecase() -> UseCase:
    return usecase(USE_CASE)


def rule_scorer(flip: float = 0.05) -> Scorer:
    """Agrawal's function 0 (the pre-drift concept) with ``flip`` of the answers wrong,
    chosen by a hash of the row (deterministic): an imperfect model of the first concept."""

    def score(frame: pd.DataFrame) -> np.ndarray:
        age = frame["age"].to_numpy()
        approve = (age < 40) | (age >= 60)
        keys = [
            f"{a}:{s}:{loan}" for a, s, loan in zip(frame["age"], frame["salary"], frame["loan"], strict=True)
        ]
        wrong = np.array(
            [int(hashlib.sha256(k.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < flip for k in keys]
        )
        return np.where(approve ^ wrong, 0.9, 0.1)

    return score


def reference(scorer: Scorer, *, rows: int = 3000, seed: int = 7, use_case: str = USE_CASE) -> dict[str, Any]:
    """The training reference of a model scored by ``scorer``, built as the trainer builds it
    (``use_case``: a copy of the loan spec under another name)."""
    uc = loan_usecase()
    frame = loan_frame(rows, seed)
    p1 = scorer(frame[uc.model_inputs()])
    labels = frame["label"].to_numpy()
    predictions = np.stack([1 - p1, p1], axis=1)
    doc = build_reference(
        frame[uc.model_inputs()],
        uc,
        predictions,
        seed=seed,
        quality={"metric": "auc", "value": auc(labels == 1, p1), "rows": rows},
    )
    return {**doc, "use_case": use_case}


@dataclass(frozen=True)
class Timed:
    """One event at its event time; ``index`` is the record's position in the stream."""

    at: datetime
    index: int
    event: gateway_events.PredictionLogged | gateway_events.FeedbackRecorded
    drifted: bool


def events(
    scorer: Scorer,
    *,
    n: int,
    seed: int = 11,
    drift_at: int | None = None,
    model: VersionKey = MODEL_V1,
    prefix: str = "p",
    skip: int = 0,
) -> list[Timed]:
    """Predictions (at event time) and feedback (at label time) of records ``skip`` to ``n``
    of the stream, in time order, as served by ``model``."""
    uc = loan_usecase()
    examples = list(itertools.islice(LoanStream(seed=seed, drift_at=drift_at), skip, n))
    frame = frame_from_examples(uc, examples)
    inputs = frame[uc.model_inputs()]
    p1 = scorer(inputs)
    columns = list(inputs.columns)
    matrix = inputs.to_numpy(dtype=np.float64)
    ref = common_pb2.ModelRef(use_case=model.use_case, model_name=model.model_name, version=model.version)
    out: list[Timed] = []
    for i, ex in enumerate(examples, start=skip):
        pid = f"{prefix}-{seed}-{i}"
        row = i - skip
        label = 1 if p1[row] >= 0.5 else 0
        prediction = gateway_events.PredictionLogged(
            prediction_id=pid,
            use_case=model.use_case,
            model=ref,
            entity_id=ex.entity_id,
            output=common_pb2.Value(double_value=float(p1[row])),
            timestamp=ts(ex.event_time),
            alias="champion",
        )
        for name, value in zip(columns, matrix[row].tolist(), strict=True):
            prediction.features[name].double_value = value
        prediction.outputs["p_0"].double_value = float(1 - p1[row])
        prediction.outputs["p_1"].double_value = float(p1[row])
        prediction.outputs["label"].int64_value = label
        feedback = gateway_events.FeedbackRecorded(
            feedback_id=f"f-{pid}",
            prediction_id=pid,
            use_case=model.use_case,
            outcome=common_pb2.Value(int64_value=int(ex.label)),
            observed_at=ts(ex.label_time),
            entity_id=ex.entity_id,
            record_id=ex.record_id,
            event_time=ts(ex.event_time),
        )
        out.append(Timed(ex.event_time, i, prediction, ex.drifted))
        out.append(Timed(ex.label_time, i, feedback, ex.drifted))
    out.sort(key=lambda t: (t.at, isinstance(t.event, gateway_events.PredictionLogged)))
    return out


def chunks(items: list[Timed], size: int) -> Iterator[list[Timed]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
