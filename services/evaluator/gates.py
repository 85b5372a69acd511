"""The evaluation gates of a use case's spec, applied to a candidate (and the champion).

Gates, in order:
- ``holdout_size``: enough labelled rows in the holdout to judge at all.
- ``metric_floor``: the use case's metric reaches ``evaluation.floor``.
- ``no_regression``: candidate − champion on the same rows, no worse than
  ``evaluation.max_regression`` (skipped when there is no champion: the first version).
  A champion that could not be scored on the holdout (its inputs are not there, or its
  metric is undefined) fails the gate: no comparison is never a pass, so such a
  candidate is not promoted by the gates alone.
- ``fairness_gap``: demographic parity difference across ``evaluation.fairness.attribute``
  at most ``max_gap`` plus the holdout's sampling noise (one-sided 99% bound on the
  difference of the two extreme groups' rates), that allowance capped at
  ``allowance_cap`` × ``max_gap``; the gate's threshold is the effective bound and its
  message says how it was made (and, when the cap bit, how many rows per group the
  holdout would need). Skipped, and recorded as skipped, when the holdout does not carry
  the attribute or the task is regression.
- ``calibration``: expected calibration error at most ``evaluation.max_calibration_error``.

A skipped gate passes; its message starts with ``skipped:`` so the report says so. An
undefined metric (NaN: e.g. AUC on a holdout with one class) fails the gate that needs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from libs.usecase import UseCase
from services.evaluator.domain import GateResult
from services.evaluator.scores import MetricSet

# Float noise must not fail a gate that is met exactly.
TOLERANCE = 1e-12


@dataclass(frozen=True)
class Verdict:
    gates: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


def _compare(value: float, threshold: float, comparator: str) -> bool:
    if math.isnan(value):
        return False
    if comparator == ">=":
        return value >= threshold - TOLERANCE
    return value <= threshold + TOLERANCE


def _skipped(gate: str, metric: str, threshold: float, comparator: str, why: str) -> GateResult:
    return GateResult(gate, metric, 0.0, threshold, True, comparator, f"skipped: {why}")


def holdout_size(rows: int, min_rows: int) -> GateResult:
    ok = rows >= min_rows
    return GateResult(
        "holdout_size",
        "rows",
        float(rows),
        float(min_rows),
        ok,
        ">=",
        f"{rows} labelled rows in the holdout" + ("" if ok else f", fewer than {min_rows}"),
    )


def metric_floor(uc: UseCase, candidate: MetricSet) -> GateResult:
    metric, floor = uc.evaluation.metric, uc.evaluation.floor
    comparator = ">=" if uc.evaluation.higher_is_better else "<="
    value = candidate.values.get(metric, float("nan"))
    ok = _compare(value, floor, comparator)
    message = (
        f"{metric} is undefined on the holdout"
        if math.isnan(value)
        else f"{metric} {value:.4f} {comparator if ok else _negate(comparator)} floor {floor}"
    )
    return GateResult("metric_floor", metric, value, floor, ok, comparator, message)


def no_regression(
    uc: UseCase, candidate: MetricSet, champion: MetricSet | None, *, not_comparable: str = ""
) -> GateResult:
    """Candidate − champion; ``not_comparable`` says why a champion exists but was not scored."""
    metric, margin = uc.evaluation.metric, uc.evaluation.max_regression
    higher = uc.evaluation.higher_is_better
    comparator, threshold = (">=", -margin) if higher else ("<=", margin)
    if not_comparable:
        return _not_compared(metric, threshold, comparator, not_comparable)
    if champion is None:
        return _skipped("no_regression", metric, threshold, comparator, "no champion (first version)")
    champ = champion.values.get(metric, float("nan"))
    if math.isnan(champ):
        return _not_compared(
            metric, threshold, comparator, f"the champion's {metric} is undefined on the holdout"
        )
    value = candidate.values.get(metric, float("nan")) - champ
    ok = _compare(value, threshold, comparator)
    message = (
        f"candidate {metric} is undefined on the holdout"
        if math.isnan(value)
        else f"candidate − champion = {value:+.4f} ({comparator} {threshold:+.4f} to pass)"
    )
    return GateResult("no_regression", metric, value, threshold, ok, comparator, message)


def _not_compared(metric: str, threshold: float, comparator: str, why: str) -> GateResult:
    # A champion exists and the candidate would replace it: without a comparison the
    # gates cannot say it is no worse, so the gate fails (it used to pass as "skipped").
    return GateResult(
        "no_regression",
        metric,
        float("nan"),
        threshold,
        False,
        comparator,
        f"not compared with the champion: {why}; a candidate is never promoted without a comparison "
        "(remove the champion alias to accept a first version under a new input contract)",
    )


# The sampling allowance is at most this fraction of max_gap by default: on a small
# holdout the noise alone would otherwise let a gap of twice max_gap or more pass.
ALLOWANCE_CAP = 0.5


def fairness_gap(
    uc: UseCase, candidate: MetricSet, *, allowance_cap: float = ALLOWANCE_CAP
) -> GateResult | None:
    fairness = uc.evaluation.fairness
    if fairness is None:
        return None
    metric = f"demographic_parity_difference[{fairness.attribute}]"
    if uc.task == "regression":
        return _skipped("fairness_gap", metric, fairness.max_gap, "<=", "not defined for regression")
    if candidate.parity_gap is None:
        return _skipped("fairness_gap", metric, fairness.max_gap, "<=", "attribute not in holdout set")
    noise = _sampling_allowance(candidate)
    cap = allowance_cap * fairness.max_gap
    allowance = min(noise, cap)
    bound = fairness.max_gap + allowance
    ok = _compare(candidate.parity_gap, bound, "<=")
    rates = ", ".join(f"{k}={v:.3f}" for k, v in sorted(candidate.parity_rates.items()))
    how = f"bound {bound:.4f} = max_gap {fairness.max_gap:g} + sampling allowance {allowance:.4f}"
    if noise > cap:
        needed = _rows_for(candidate, cap)
        how += (
            f" (the holdout's noise, {noise:.4f}, capped at {allowance_cap:g} × max_gap: too few rows "
            f"to resolve max_gap{f'; about {needed} rows per group would let it fit' if needed else ''})"
        )
    return GateResult(
        "fairness_gap",
        metric,
        candidate.parity_gap,
        bound,
        ok,
        "<=",
        f"gap {candidate.parity_gap:.4f} across {fairness.attribute} ({rates}); {how}",
    )


# z of a one-sided 99% bound: the gate fails only when the gap is beyond max_gap by more
# than the holdout's own sampling noise, not whenever a few hundred rows happen to
# split unevenly (a model with no real gap would otherwise fail one holdout in three).
Z_99 = 2.326


def _extremes(candidate: MetricSet) -> tuple[str, str]:
    rates = candidate.parity_rates
    return max(rates, key=rates.__getitem__), min(rates, key=rates.__getitem__)


def _group_size(candidate: MetricSet, group: str) -> int:
    found = candidate.slices.get(group)
    return found.rows if found is not None else max(1, candidate.rows // max(1, len(candidate.parity_rates)))


def _sampling_allowance(candidate: MetricSet) -> float:
    """Standard error of the difference between the highest and lowest group rates, × z."""
    rates = candidate.parity_rates
    if len(rates) < 2:
        return 0.0
    var = sum(rates[g] * (1 - rates[g]) / max(1, _group_size(candidate, g)) for g in _extremes(candidate))
    return Z_99 * math.sqrt(var)


def _rows_for(candidate: MetricSet, allowance: float) -> int:
    """Rows per group (at the observed extreme rates) for the allowance to shrink to ``allowance``."""
    rates = candidate.parity_rates
    spread = sum(rates[g] * (1 - rates[g]) for g in _extremes(candidate))
    if allowance <= 0 or spread <= 0:
        return 0
    return math.ceil(spread * (Z_99 / allowance) ** 2)


def calibration(uc: UseCase, candidate: MetricSet) -> GateResult | None:
    limit = uc.evaluation.max_calibration_error
    if limit is None:
        return None
    if uc.task == "regression":
        return _skipped("calibration", "ece", limit, "<=", "not defined for regression")
    value = float("nan") if candidate.ece is None else candidate.ece
    ok = _compare(value, limit, "<=")
    return GateResult(
        "calibration",
        "ece",
        value,
        limit,
        ok,
        "<=",
        "ece is undefined on the holdout" if math.isnan(value) else f"ece {value:.4f}",
    )


def evaluate_gates(
    uc: UseCase,
    candidate: MetricSet,
    champion: MetricSet | None,
    *,
    min_rows: int,
    not_comparable: str = "",
    allowance_cap: float = ALLOWANCE_CAP,
) -> Verdict:
    """Every gate; ``not_comparable`` is why a champion exists but could not be scored."""
    gates = [
        holdout_size(candidate.rows, min_rows),
        metric_floor(uc, candidate),
        no_regression(uc, candidate, champion, not_comparable=not_comparable),
    ]
    fairness = fairness_gap(uc, candidate, allowance_cap=allowance_cap)
    gates += [g for g in (fairness, calibration(uc, candidate)) if g is not None]
    return Verdict(gates)


def _negate(comparator: str) -> str:
    return "<" if comparator == ">=" else ">"
