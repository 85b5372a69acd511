"""Quality, calibration and fairness metrics as pure numpy functions.

Labels are class indices (int) for classification and floats for regression; model
outputs are what the artifact returns: probabilities ``[n, n_classes]`` or predictions
``[n, 1]``. A metric that is undefined on the data (AUC with one class present, any
metric on no rows) is NaN, and callers decide what NaN means for them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

HIGHER_IS_BETTER = {
    "auc": True,
    "accuracy": True,
    "f1_macro": True,
    "mae": False,
    "rmse": False,
    "log_loss": False,
    "ece": False,
}


def auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U, ties counted half)."""
    y = np.asarray(y_true).astype(bool)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    u = ranks[y].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def f1_macro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in the labels or the predictions."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return float("nan")
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean(np.abs(np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64))))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if len(y_true) == 0:
        return float("nan")
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff)))


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = 1e-12) -> float:
    if len(y_true) == 0:
        return float("nan")
    p = np.clip(np.asarray(proba, dtype=np.float64)[np.arange(len(y_true)), np.asarray(y_true)], eps, 1.0)
    return float(-np.mean(np.log(p)))


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width confidence bins.

    Binary (two columns): the confidence is P(class 1) against the rate of class 1 in the
    bin. Multiclass: the top probability against the accuracy of the top class.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        return float("nan")
    if proba.shape[1] == 2:
        confidence, outcome = proba[:, 1], (y_true == 1).astype(np.float64)
    else:
        confidence = proba.max(axis=1)
        outcome = (proba.argmax(axis=1) == y_true).astype(np.float64)
    # Bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 goes to the first bin.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(outcome[mask].mean() - confidence[mask].mean())
    return float(total / len(y_true))


def demographic_parity_difference(
    y_pred: np.ndarray, groups: Sequence[object] | np.ndarray, n_classes: int = 2
) -> tuple[float, dict[str, float]]:
    """Largest gap between groups in the rate of predicting a class.

    Binary: the gap in positive (class 1) rate. Multiclass: the largest such gap over
    all classes. Returns the gap and, per group, its positive rate (binary) or its
    rate of the class with the largest gap (multiclass). Rows with a missing group
    value are left out.
    """
    y_pred = np.asarray(y_pred)
    keys = np.array(["" if _missing(g) else str(g) for g in groups], dtype=object)
    present = keys != ""
    y_pred, keys = y_pred[present], keys[present]
    names = sorted(set(keys.tolist()))
    if len(names) < 2:
        return 0.0, {n: float(np.mean(y_pred == 1)) for n in names}
    classes = [1] if n_classes == 2 else list(range(n_classes))
    best_gap, best_rates = -1.0, {}
    for c in classes:
        rates = {n: float(np.mean(y_pred[keys == n] == c)) for n in names}
        gap = max(rates.values()) - min(rates.values())
        if gap > best_gap:
            best_gap, best_rates = gap, rates
    return float(best_gap), best_rates


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def predicted_classes(proba: np.ndarray) -> np.ndarray:
    """Class index of the highest probability (ties: the lower index)."""
    return np.asarray(proba).argmax(axis=1)


def quality(metric: str, y_true: np.ndarray, output: np.ndarray) -> float:
    """The use case's evaluation metric from labels and the model's raw output."""
    output = np.asarray(output)
    if metric == "auc":
        return auc(y_true, output[:, 1])
    if metric == "accuracy":
        return accuracy(y_true, predicted_classes(output))
    if metric == "f1_macro":
        return f1_macro(y_true, predicted_classes(output))
    if metric == "mae":
        return mae(y_true, output.reshape(-1))
    if metric == "rmse":
        return rmse(y_true, output.reshape(-1))
    raise ValueError(f"unknown metric {metric!r}")


def standard_metrics(task: str, y_true: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Every metric that fits ``task``, by name."""
    if task == "regression":
        pred = np.asarray(output).reshape(-1)
        return {"mae": mae(y_true, pred), "rmse": rmse(y_true, pred)}
    values = {
        "accuracy": quality("accuracy", y_true, output),
        "f1_macro": quality("f1_macro", y_true, output),
        "log_loss": log_loss(y_true, output),
        "ece": expected_calibration_error(y_true, output),
    }
    if task == "binary":
        values["auc"] = quality("auc", y_true, output)
    return values
