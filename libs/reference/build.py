"""Reference statistics of a model version, built at training time from its training split.

The monitor compares live traffic with them (PSI and KS per numeric input, chi-square
per categorical input, prediction drift, live quality against the validation quality).
The result is a JSON-able dict (no NaN: undefined values are ``None``)::

    {"schema_version": 1, "use_case": ..., "task": ..., "rows": n, "seed": s,
     "inputs": [model input columns, in order],
     "features": {
        "<numeric column>": {"kind": "numeric", "count", "missing", "mean", "std", "min", "max",
                             "quantiles": {"0.5": ...}, "histogram": {"edges": [...], "counts": [...]},
                             "sample": [≤ sample_size values]},
        "<one-hot feature>": {"kind": "categorical", "columns": [...], "categories": [...],
                              "counts": {cat: n}, "frequencies": {cat: share}, "missing": n}},
     "prediction": binary:     {"kind": "binary", "output": "p_<class 1>", + numeric stats of P(class 1),
                                "class_frequencies": {...}}
                   multiclass: {"kind": "multiclass", "counts": {...}, "frequencies": {...}}
                   regression: {"kind": "regression", + numeric stats of the prediction},
     "quality": {"metric", "value", "split", "higher_is_better", "rows"} or None}

Histogram edges are training quantiles; the outer bins are open-ended when counting
live values (:func:`libs.reference.drift.bin_counts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from libs.reference.drift import MISSING, bin_counts, categories_of
from libs.usecase import UseCase

SCHEMA_VERSION = 1
QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def _num(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _round(values: np.ndarray) -> list[float]:
    # Seven significant digits: float32 precision, a third of the JSON.
    return [float(f"{v:.7g}") for v in values.tolist()]


def onehot_groups(uc: UseCase) -> dict[str, tuple[list[str], list[str]]]:
    """One-hot feature name → (its model-input columns, its categories as strings)."""
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for f in uc.features.row:
        if f.transform == "one_hot":
            categories = [str(c) for c in uc.fields[f.source].enum or ()]
            groups[f.name] = ([f"{f.name}__{c}" for c in categories], categories)
    return groups


def numeric_summary(
    values: np.ndarray, *, bins: int = 10, sample_size: int = 2000, rng: np.random.Generator | None = None
) -> dict[str, Any]:
    """Count, missing, moments, quantiles, a quantile histogram and a bounded random sample."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    summary: dict[str, Any] = {
        "kind": "numeric",
        "count": int(len(values)),
        "missing": int(len(values) - len(finite)),
    }
    if len(finite) == 0:
        return {
            **summary,
            "mean": None,
            "std": None,
            "min": None,
            "max": None,
            "quantiles": {},
            "histogram": {"edges": [0.0, 0.0], "counts": [0]},
            "sample": [],
        }
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    rng = rng or np.random.default_rng(0)
    sample = finite if len(finite) <= sample_size else rng.choice(finite, size=sample_size, replace=False)
    return {
        **summary,
        "mean": _num(finite.mean()),
        "std": _num(finite.std()),
        "min": _num(finite.min()),
        "max": _num(finite.max()),
        "quantiles": {
            str(q): _num(v) for q, v in zip(QUANTILES, np.quantile(finite, QUANTILES), strict=True)
        },
        "histogram": {
            "edges": [float(e) for e in edges],
            "counts": [int(c) for c in bin_counts(finite, edges)],
        },
        "sample": _round(np.sort(sample)),
    }


def categorical_summary(labels: list[str], categories: list[str]) -> dict[str, Any]:
    counts = {c: 0 for c in categories}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    total = max(len(labels), 1)
    return {
        "counts": counts,
        "frequencies": {c: n / total for c, n in counts.items()},
        "missing": counts.get(MISSING, 0),
    }


def build_reference(
    frame: pd.DataFrame,
    uc: UseCase,
    predictions: np.ndarray,
    *,
    quality: Mapping[str, Any] | None = None,
    seed: int = 0,
    bins: int = 10,
    sample_size: int = 2000,
) -> dict[str, Any]:
    """Reference statistics of ``frame`` (the training split, model-input columns) and
    of the model's ``predictions`` on it (probabilities or ``[n, 1]`` regression outputs)."""
    rng = np.random.default_rng(seed)
    inputs = uc.model_inputs()
    groups = onehot_groups(uc)
    grouped = {c for columns, _ in groups.values() for c in columns}
    features: dict[str, Any] = {}
    for column in inputs:
        if column not in grouped:
            features[column] = numeric_summary(
                frame[column].to_numpy(dtype=np.float64), bins=bins, sample_size=sample_size, rng=rng
            )
    for name, (columns, categories) in groups.items():
        labels = categories_of(frame[columns].to_numpy(dtype=np.float64), categories)
        features[name] = {
            "kind": "categorical",
            "columns": columns,
            "categories": categories,
            **categorical_summary(labels, categories),
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "use_case": uc.name,
        "task": uc.task,
        "rows": int(len(frame)),
        "seed": seed,
        "inputs": inputs,
        "features": features,
        "prediction": prediction_summary(
            uc, np.asarray(predictions), bins=bins, sample_size=sample_size, rng=rng
        ),
        "quality": _quality(quality, uc),
    }


def prediction_summary(
    uc: UseCase,
    predictions: np.ndarray,
    *,
    bins: int = 10,
    sample_size: int = 2000,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """The primary output's distribution: P(class 1) for binary, predicted-class
    frequencies for multiclass, the prediction for regression."""
    if uc.task == "regression":
        return {
            **numeric_summary(predictions.reshape(-1), bins=bins, sample_size=sample_size, rng=rng),
            "kind": "regression",
        }
    classes = [str(c) for c in uc.label.classes or ()]
    predicted = [classes[i] for i in predictions.argmax(axis=1).tolist()] if len(predictions) else []
    frequencies = categorical_summary(predicted, classes)
    if uc.task == "binary":
        return {
            **numeric_summary(
                predictions[:, 1] if len(predictions) else np.zeros(0),
                bins=bins,
                sample_size=sample_size,
                rng=rng,
            ),
            "kind": "binary",
            "output": f"p_{classes[1]}",
            "class_frequencies": frequencies["frequencies"],
        }
    return {"kind": "multiclass", "counts": frequencies["counts"], "frequencies": frequencies["frequencies"]}


def _quality(quality: Mapping[str, Any] | None, uc: UseCase) -> dict[str, Any] | None:
    if quality is None:
        return None
    value = quality.get("value")
    return {
        "metric": quality.get("metric", uc.evaluation.metric),
        "value": None if value is None else _num(value),
        "split": quality.get("split", "validation"),
        "higher_is_better": uc.evaluation.higher_is_better,
        "rows": int(quality.get("rows", 0)),
    }
