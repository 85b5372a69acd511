"""Promotion policy and who may decide, checked inside the registry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.errors import FailedPrecondition, PermissionDenied
from services.registry import policy
from services.registry.domain import SYSTEM, GateResult, ModelVersion, Signature, VersionStatus
from tests.unit.registry.helpers import principal


def test_auto_promotes_a_pass_approval_waits_a_failure_never_promotes() -> None:
    auto = policy.decide_on_evaluation("auto", True, [])
    assert (auto.status, auto.promote) == (VersionStatus.APPROVED, True)
    gated = policy.decide_on_evaluation("approval", True, [])
    assert (gated.status, gated.promote) == (VersionStatus.PENDING_APPROVAL, False)
    for promotion in ("auto", "approval"):
        failed = policy.decide_on_evaluation(promotion, False, ["fairness_gap"])
        assert (failed.status, failed.promote) == (VersionStatus.EVALUATION_FAILED, False)
        assert "fairness_gap" in failed.reason


def test_only_an_approver_of_that_use_case_may_approve() -> None:
    policy.require_approver(principal("ann", "approver"), "loan", "approve")
    policy.require_approver(principal("ann", "approver", use_case="loan"), "loan", "approve")
    for who in (
        principal("eve", "ml-engineer"),
        principal("bob", "approver", use_case="other"),
        principal("adm", "admin"),
    ):
        with pytest.raises(PermissionDenied, match="approver"):
            policy.require_approver(who, "loan", "approve")
    with pytest.raises(PermissionDenied):
        policy.require_scope(principal("bob", "approver", use_case="other"), "loan")


def version(status: VersionStatus) -> ModelVersion:
    return ModelVersion(
        "uc", "m", 3, status, "a" * 64, Signature(("x",), ("0", "1"), "binary"), datetime.now(UTC), SYSTEM
    )


@pytest.mark.parametrize("status", [s for s in VersionStatus if s is not VersionStatus.APPROVED])
def test_serving_aliases_need_an_approved_version(status: VersionStatus) -> None:
    for alias in ("champion", "challenger", "previous"):
        with pytest.raises(FailedPrecondition):
            policy.check_alias_target(alias, version(status))
    policy.check_alias_target("champion", version(VersionStatus.APPROVED))
    if status is not VersionStatus.ARCHIVED:
        policy.check_alias_target("staging", version(status))


@pytest.mark.parametrize("status", [s for s in VersionStatus if s is not VersionStatus.APPROVED])
def test_only_an_approved_version_is_servable(status: VersionStatus) -> None:
    with pytest.raises(FailedPrecondition, match="only an approved version"):
        policy.check_servable(version(status))
    policy.check_servable(version(VersionStatus.APPROVED))


def test_the_verdict_is_read_from_the_gates_not_from_their_flags() -> None:
    def gate(value: float, threshold: float, comparator: str = ">=", passed: bool = True) -> GateResult:
        return GateResult("metric_floor", "auc", value, threshold, passed, comparator)

    assert policy.verdict_of([gate(0.9, 0.75), gate(0.01, 0.05, "<=")])
    # Flags that lie, values that do not meet the threshold, NaN, unknown comparators, none at all.
    assert not policy.verdict_of([gate(0.6, 0.75, passed=True)])
    assert not policy.verdict_of([gate(0.9, 0.75, passed=False)])
    assert not policy.verdict_of([gate(float("nan"), 0.75)])
    assert not policy.verdict_of([gate(0.9, 0.75, "==")])
    assert not policy.verdict_of([])
    # Met exactly, up to float noise, passes (as the evaluator's own gates say).
    assert policy.verdict_of([gate(0.75 - 1e-13, 0.75)])
