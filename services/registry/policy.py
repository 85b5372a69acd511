"""Promotion policy: what an evaluation verdict does to a version, and who may decide.

The use case spec's ``deployment.promotion`` picks the policy:

- ``auto``: a candidate the evaluator passed becomes APPROVED and is promoted at
  once (``champion`` → ``previous``, candidate → ``champion``).
- ``approval``: it becomes PENDING_APPROVAL and waits for ``ApproveModelVersion``
  by a caller holding the ``approver`` role for that use case.

A failed candidate becomes EVALUATION_FAILED and is never promoted. Only an
APPROVED version may be ``champion``, ``challenger`` or ``previous``.

These checks run inside the registry whatever the gRPC permission table says, so a
misconfigured table cannot let an ml-engineer approve a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.errors import FailedPrecondition, PermissionDenied
from libs.rpc.auth import Principal
from services.registry.domain import CHALLENGER, CHAMPION, PREVIOUS, ModelVersion, VersionStatus

APPROVER_ROLE = "approver"
# Aliases that serve traffic (or may again): they need an APPROVED version.
SERVING_ALIASES = frozenset({CHAMPION, CHALLENGER, PREVIOUS})


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


def check_alias_target(alias: str, version: ModelVersion) -> None:
    """A serving alias may only point at an APPROVED version."""
    if alias in SERVING_ALIASES and version.status is not VersionStatus.APPROVED:
        raise FailedPrecondition(
            f"{version.key} is {version.status.value}: only an approved version can be {alias!r}"
        )
    if version.status is VersionStatus.ARCHIVED:
        raise FailedPrecondition(f"{version.key} is archived")
