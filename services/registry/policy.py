"""Promotion policy: what an evaluation verdict does to a version, and who may decide.

The use case spec's ``deployment.promotion`` picks the policy:

- ``auto``: a candidate the evaluator passed becomes APPROVED and is promoted at
  once (``champion`` → ``previous``, candidate → ``champion``).
- ``approval``: it becomes PENDING_APPROVAL and waits for ``ApproveModelVersion``
  by a caller holding the ``approver`` role for that use case.

A failed candidate becomes EVALUATION_FAILED and is never promoted. Only an
APPROVED version may be ``champion``, ``challenger`` or ``previous``, and only an
APPROVED version is ever handed out to be served (a serving bundle, a Triton export):
a failed, rejected, pending or archived one can never be loaded.

The registry decides pass or fail itself (:func:`verdict_of`), from each gate's value,
threshold and comparator, never from a ``passed`` flag that came with a verdict.

These checks run inside the registry whatever the gRPC permission table says, so a
misconfigured table cannot let an ml-engineer approve a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from libs.errors import FailedPrecondition, PermissionDenied
from libs.rpc.auth import Principal
from services.registry.domain import CHALLENGER, CHAMPION, PREVIOUS, ModelVersion, VersionStatus

APPROVER_ROLE = "approver"
# Aliases that serve traffic (or may again): they need an APPROVED version.
SERVING_ALIASES = frozenset({CHAMPION, CHALLENGER, PREVIOUS})


# Float noise must not fail a gate met exactly (the evaluator's own tolerance).
GATE_TOLERANCE = 1e-12


class GateLike(Protocol):
    @property
    def value(self) -> float: ...
    @property
    def threshold(self) -> float: ...
    @property
    def comparator(self) -> str: ...
    @property
    def passed(self) -> bool: ...


def gate_passed(gate: GateLike) -> bool:
    """A gate passes when its value meets its threshold by its comparator *and* the gate
    says it passed: an undefined value (NaN) or an unknown comparator fails."""
    value, threshold = float(gate.value), float(gate.threshold)
    if math.isnan(value) or math.isnan(threshold):
        return False
    if gate.comparator == ">=":
        met = value >= threshold - GATE_TOLERANCE
    elif gate.comparator == "<=":
        met = value <= threshold + GATE_TOLERANCE
    else:
        return False
    return met and bool(gate.passed)


def verdict_of(gates: Iterable[GateLike]) -> bool:
    """Pass only with at least one gate, every one passed (:func:`gate_passed`)."""
    results = [gate_passed(g) for g in gates]
    return bool(results) and all(results)


@dataclass(frozen=True)
class EvaluationDecision:
    status: VersionStatus
    promote: bool
    reason: str


def decide_on_evaluation(promotion: str, passed: bool, failed_gates: list[str]) -> EvaluationDecision:
    """What a verdict on a CANDIDATE does under the use case's promotion policy."""
    if not passed:
        gates = ", ".join(failed_gates) or "a gate"
        return EvaluationDecision(VersionStatus.EVALUATION_FAILED, False, f"failed evaluation: {gates}")
    if promotion == "auto":
        return EvaluationDecision(
            VersionStatus.APPROVED, True, "passed evaluation; policy 'auto' promotes it"
        )
    return EvaluationDecision(
        VersionStatus.PENDING_APPROVAL, False, "passed evaluation; policy 'approval' waits for an approver"
    )


def in_scope(principal: Principal, use_case: str) -> bool:
    return "*" in principal.use_cases or use_case in principal.use_cases


def require_scope(principal: Principal, use_case: str) -> None:
    """The caller's token must cover the use case it changes."""
    if not in_scope(principal, use_case):
        raise PermissionDenied(f"{principal.subject} has no access to use case {use_case!r}")


def is_approver(principal: Principal, use_case: str) -> bool:
    return APPROVER_ROLE in principal.roles_in(use_case)


def require_approver(principal: Principal, use_case: str, what: str) -> None:
    if not is_approver(principal, use_case):
        raise PermissionDenied(
            f"{principal.subject} cannot {what}: the '{APPROVER_ROLE}' role for use case "
            f"{use_case!r} is required (roles held: {', '.join(sorted(principal.roles_in(use_case))) or 'none'})"
        )


def check_servable(version: ModelVersion) -> None:
    """Only an APPROVED version may be loaded or served (serving bundle, Triton export)."""
    if version.status is not VersionStatus.APPROVED:
        raise FailedPrecondition(
            f"{version.key} is {version.status.value}: only an approved version can be served or exported"
        )


def check_alias_target(alias: str, version: ModelVersion) -> None:
    """A serving alias may only point at an APPROVED version."""
    if alias in SERVING_ALIASES and version.status is not VersionStatus.APPROVED:
        raise FailedPrecondition(
            f"{version.key} is {version.status.value}: only an approved version can be {alias!r}"
        )
    if version.status is VersionStatus.ARCHIVED:
        raise FailedPrecondition(f"{version.key} is archived")
