"""What may change in an onboarded use case without a new model (libs.usecase.compat)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from libs.errors import InvalidArgument
from libs.usecase import UseCase, load_default
from libs.usecase.compat import IncompatibleChange, Outcome, diff, needs_new_model, plan

LOAN = load_default()["loan_approval"]


def changed(spec: UseCase, version: int = 2, **sections: Any) -> UseCase:
    """``spec`` at ``version`` with whole sections replaced (dicts merged into the section)."""
    data = spec.model_dump()
    for key, value in sections.items():
        data[key] = (
            {**data[key], **value} if isinstance(value, dict) and isinstance(data[key], dict) else value
        )
    data["version"] = version
    return UseCase.model_validate(data)


def test_a_new_use_case_is_created() -> None:
    assert plan(None, LOAN).outcome is Outcome.CREATED


def test_the_same_version_and_spec_again_changes_nothing() -> None:
    assert plan(LOAN, LOAN) == plan(LOAN, LOAN.model_copy())
    assert plan(LOAN, LOAN).outcome is Outcome.UNCHANGED


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"drift": {"psi_threshold": 0.3, "hysteresis": 3}}, "drift.psi_threshold"),
        ({"retraining": {"cooldown": "10m", "max_per_day": 3}}, "retraining.cooldown"),
        ({"deployment": {"strategy": "canary", "canary_share": 0.2}}, "deployment.strategy"),
        ({"evaluation": {"floor": 0.8, "max_regression": 0.01}}, "evaluation.floor"),
        (
            {"evaluation": {"fairness": {"attribute": "gender", "max_gap": 0.2}}},
            "evaluation.fairness.max_gap",
        ),
        ({"model": {"epochs": 10}}, "model.epochs"),
        ({"training": {"min_rows": 100}}, "training.min_rows"),
        ({"label": {"max_delay": "2h"}}, "label.max_delay"),
        ({"description": "another text"}, "description"),
    ],
)
def test_policy_changes_apply_without_a_new_model(sections: dict[str, Any], field: str) -> None:
    result = plan(LOAN, changed(LOAN, **sections))
    assert result.outcome is Outcome.UPDATED
    assert field in [c.field for c in result.changes]
    assert not any(c.needs_new_model for c in result.changes)


def test_record_contract_bounds_may_change_but_not_the_schema() -> None:
    fields = LOAN.model_dump()["fields"]
    fields["salary"] = {**fields["salary"], "max": 2_000_000, "description": "yearly"}
    assert plan(LOAN, changed(LOAN, fields=fields)).outcome is Outcome.UPDATED

    for edit, field in [
        ({"salary": {**fields["salary"], "type": "int"}}, "fields.salary.type"),
        ({"elevel": {**fields["elevel"], "enum": [0, 1, 2]}}, "fields.elevel.enum"),
        ({"applicant_name": {**fields["applicant_name"], "pii": "drop"}}, "fields.applicant_name.pii"),
        ({"extra": {"type": "float"}}, "fields.extra"),
    ]:
        with pytest.raises(IncompatibleChange) as info:
            plan(LOAN, changed(LOAN, fields={**fields, **edit}))
        assert info.value.field == field


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"features": {"ttl": "7d"}}, "features.ttl"),
        ({"features": {"aggregates": []}}, "features.aggregates"),
        ({"label": {"classes": ["0", "1"]}}, "label.classes"),
        ({"entity": {"field": "applicant_name"}}, "entity.field"),
        ({"evaluation": {"fairness": None}}, "evaluation.fairness"),
    ],
)
def test_changes_of_what_the_model_was_trained_on_are_refused_naming_the_field(
    sections: dict[str, Any], field: str
) -> None:
    if field == "entity.field":
        fields = LOAN.model_dump()["fields"]
        fields["applicant_name"] = {**fields["applicant_name"], "required": True, "pii": "none"}
        sections = {**sections, "fields": fields}
    with pytest.raises(IncompatibleChange) as info:
        plan(LOAN, changed(LOAN, **sections))
    err = info.value
    assert field in err.fields and err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.message.startswith(err.field) and "new model" in err.message


def test_every_new_model_change_is_named_once() -> None:
    new = changed(LOAN, task="binary", features={"ttl": "7d"}, drift={"psi_threshold": 0.5})
    changes = {c.field: c.needs_new_model for c in diff(LOAN, new)}
    assert changes == {"features.ttl": True, "drift.psi_threshold": False}


def test_versions_must_grow() -> None:
    with pytest.raises(InvalidArgument, match="version: version 1 of 'loan_approval' is applied already"):
        plan(LOAN, changed(LOAN, version=1, drift={"psi_threshold": 0.3}))
    with pytest.raises(InvalidArgument, match="older than the applied version 3"):
        plan(changed(LOAN, version=3), LOAN)


def test_the_rule_table() -> None:
    live = ["drift.window", "deployment.promotion", "fields.salary.max", "event_time.max_future_skew"]
    stale = ["task", "fields.salary.type", "fields.new_one", "event_time.field", "label.field", "features"]
    assert not any(needs_new_model(p) for p in live)
    assert all(needs_new_model(p) for p in stale)
