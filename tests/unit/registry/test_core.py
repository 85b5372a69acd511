"""The registry's behaviour on a real database: versions, policy, aliases, rollback, runs, lineage.

Part of the shared suite (see kit.py): SQLite here, PostgreSQL in tests/integration.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from libs.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from libs.usecase import UnknownUseCase
from services.registry.artifacts import ArtifactCorrupted
from services.registry.core import utcnow
from services.registry.domain import (
    CHAMPION,
    PREVIOUS,
    AliasChangeKind,
    DatasetRef,
    FeatureRef,
    Metric,
    ModelKey,
    NewRun,
    NewVersion,
    PredictionEntry,
    RunStatus,
    VersionKey,
    VersionStatus,
)
from services.registry.export import MODEL_PY
from tests.unit.registry.helpers import AUTO, GATED, principal
from tests.unit.registry.kit import (
    APPROVER,
    ENGINEER,
    Kit,
    champion,
    model,
    pending_events,
    reference,
    register,
    verdict,
)


def test_register_numbers_versions_and_is_idempotent_writing_no_folder(kit: Kit) -> None:
    v1 = register(kit, idempotency_key="run-1")
    v2 = register(kit, idempotency_key="run-2")
    assert (v1.version, v2.version, v1.status) == (1, 2, VersionStatus.CANDIDATE)
    assert register(kit, idempotency_key="run-1") == v1
    assert kit.artifacts.read(v1.artifact_sha256) == model()
    assert json.loads(kit.artifacts.read(v1.reference_sha256))["use_case"] == AUTO
    # Serving needs no folder: the gateway fetches bundles (Triton's repository is Triton's).
    assert not kit.repo.exists()
    actions = [r.action for r in kit.registry.list_audit(AUTO)]
    assert actions == ["model.created", "model_version.registered", "model_version.registered"]
    listed = kit.registry.list_versions(AUTO)
    assert [v.version for v in listed] == [2, 1]
    assert kit.registry.list_audit(AUTO)[1].actor.subject == "eve"


def test_bad_input_is_refused_naming_the_field(kit: Kit) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "../escape"}, "model_name"),
        ({"artifact": b"not a model"}, "artifact_content"),
        ({"artifact": b"", "artifact_sha256": "xyz"}, "artifact_sha256"),
        ({"artifact": b""}, "artifact_content"),
        ({"run_id": "no-such-run"}, "run_id"),
        ({"reference_profile": b"{}"}, "reference_profile_content.features"),
        ({"metrics": (Metric("auc", float("nan")),)}, "metrics[0].value"),
    ]
    for change, field in cases:
        args: dict[str, Any] = {"artifact": model(), "reference_profile": reference(AUTO)}
        new: dict[str, Any] = {"use_case": AUTO, "name": AUTO}
        for k, v in change.items():
            (args if k in args else new)[k] = v
        with pytest.raises(InvalidArgument) as info:
            kit.registry.register_version(NewVersion(**new), ENGINEER, **args)
        assert info.value.field == field, change
    # An unknown use case is NOT_FOUND, the same in every service (libs.usecase.UseCases.require).
    with pytest.raises(UnknownUseCase) as unknown:
        kit.registry.register_version(NewVersion("nope", AUTO), ENGINEER, artifact=model())
    assert unknown.value.field == "use_case"
    with pytest.raises(NotFound):
        kit.registry.register_version(NewVersion(AUTO, AUTO, artifact_sha256="0" * 64), ENGINEER)
    with pytest.raises(NotFound):
        kit.registry.get_version(VersionKey(AUTO, AUTO, 7))
    register(kit)
    with pytest.raises(InvalidArgument) as info:  # a model name belongs to one use case
        register(kit, GATED, name=AUTO)
    assert info.value.field == "model_name"
    assert kit.registry.verify_audit().valid


def test_auto_policy_promotes_a_passed_candidate(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    out = kit.registry.apply_evaluation(verdict(v1.key, True))
    assert out.promoted and out.version.status is VersionStatus.APPROVED and champion(kit) == 1
    kit.registry.apply_evaluation(verdict(v2.key, True))
    assert champion(kit) == 2
    assert kit.registry.get_alias(ModelKey(AUTO, AUTO), PREVIOUS)[0].version == 1
    assert pending_events(kit) == [
        (CHAMPION, 0, 1, AliasChangeKind.PROMOTE),
        (PREVIOUS, 0, 1, AliasChangeKind.PROMOTE),
        (CHAMPION, 1, 2, AliasChangeKind.PROMOTE),
    ]
    assert kit.registry.get_version(v2.key).aliases == (CHAMPION,)


def test_a_failing_candidate_is_never_promoted(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    kit.registry.apply_evaluation(verdict(v1.key, True))
    out = kit.registry.apply_evaluation(verdict(v2.key, False))
    assert not out.promoted and out.version.status is VersionStatus.EVALUATION_FAILED and champion(kit) == 1
    with pytest.raises(FailedPrecondition, match="evaluation_failed"):
        kit.registry.set_alias(v2.key, CHAMPION, ENGINEER)
    # A later passing report does not resurrect a decided version either.
    kit.registry.apply_evaluation(verdict(v2.key, True))
    assert kit.registry.get_version(v2.key).status is VersionStatus.EVALUATION_FAILED and champion(kit) == 1
    evaluated = [r for r in kit.registry.list_audit(AUTO) if r.action == "model_version.evaluated"]
    assert [r.details["to_status"] for r in evaluated] == [
        "approved",
        "evaluation_failed",
        "evaluation_failed",
    ]


def test_approval_policy_waits_and_only_an_approver_decides(kit: Kit) -> None:
    v1 = register(kit, GATED)
    out = kit.registry.apply_evaluation(verdict(v1.key, True))
    assert out.version.status is VersionStatus.PENDING_APPROVAL and not out.promoted
    with pytest.raises(NotFound):
        champion(kit, GATED)
    for who in (ENGINEER, principal("bob", "approver", use_case=AUTO), principal("root", "admin")):
        with pytest.raises(PermissionDenied):
            kit.registry.approve(v1.key, True, who)
    with pytest.raises(PermissionDenied):  # not by the back door either
        kit.registry.set_alias(v1.key, CHAMPION, ENGINEER)
    version, audit_id = kit.registry.approve(v1.key, True, APPROVER, "looks good", ["ticket-7"])
    assert version.status is VersionStatus.APPROVED and champion(kit, GATED) == 1
    entry = next(r for r in kit.registry.list_audit(GATED) if r.event_id == audit_id)
    assert (entry.action, entry.actor.subject, entry.actor.roles) == (
        "model_version.approved",
        "ann",
        ("approver",),
    )
    assert set(entry.evidence_ids) == {"ticket-7", version.evaluation_report_id}
    with pytest.raises(FailedPrecondition):
        kit.registry.approve(v1.key, True, APPROVER)
    v2 = register(kit, GATED)
    kit.registry.apply_evaluation(verdict(v2.key, True))
    rejected, _ = kit.registry.approve(v2.key, False, APPROVER, "not now")
    assert rejected.status is VersionStatus.REJECTED and champion(kit, GATED) == 1


def test_rollback_restores_the_previous_champion(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    for v in (v1, v2):
        kit.registry.apply_evaluation(verdict(v.key, True))
    model_key = ModelKey(AUTO, AUTO)
    # An alarm about a version that is no longer champion changes nothing.
    assert kit.registry.rollback(model_key, None, only_if_current=1, event_id="alarm-0") is None
    result = kit.registry.rollback(
        model_key, None, reason="auc dropped", evidence=["drift-9"], only_if_current=2, event_id="alarm-1"
    )
    assert result is not None and result.previous_version == 2 and champion(kit) == 1
    assert kit.registry.rollback(model_key, None, only_if_current=2, event_id="alarm-1") is None  # replayed
    assert kit.registry.get_version(v2.key).status is VersionStatus.ARCHIVED
    with pytest.raises(NotFound):
        kit.registry.get_alias(model_key, PREVIOUS)
    with pytest.raises(FailedPrecondition, match="previous"):
        kit.registry.rollback(model_key, ENGINEER)
    with pytest.raises(FailedPrecondition, match="archived"):
        kit.registry.set_alias(v2.key, CHAMPION, ENGINEER)
    assert pending_events(kit)[-2:] == [
        (CHAMPION, 2, 1, AliasChangeKind.ROLLBACK),
        (PREVIOUS, 1, 0, AliasChangeKind.ROLLBACK),
    ]
    assert "model_version.archived" in [r.action for r in kit.registry.lineage(v2.key).audit]


def test_alias_compare_and_set(kit: Kit) -> None:
    v1, v2 = register(kit), register(kit)
    model_key = ModelKey(AUTO, AUTO)
    assert kit.registry.set_alias(v1.key, "staging", ENGINEER, expected_version=0).previous_version == 0
    with pytest.raises(FailedPrecondition, match="compare-and-set"):
        kit.registry.set_alias(v2.key, "staging", ENGINEER, expected_version=0)
    moved = kit.registry.set_alias(v2.key, "staging", ENGINEER, expected_version=1)
    assert moved.alias is not None and (moved.previous_version, moved.alias.version) == (1, 2)
    assert kit.registry.set_alias(v2.key, "staging", ENGINEER).audit_event_id == ""  # no change, no entry
    with pytest.raises(FailedPrecondition):
        kit.registry.delete_alias(model_key, "staging", ENGINEER, expected_version=1)
    assert kit.registry.delete_alias(model_key, "staging", ENGINEER, expected_version=2).previous_version == 2
    assert kit.registry.delete_alias(model_key, "staging", ENGINEER).audit_event_id == ""
    with pytest.raises(FailedPrecondition, match="candidate"):
        kit.registry.set_alias(v1.key, "challenger", ENGINEER)
    with pytest.raises(InvalidArgument) as info:
        kit.registry.set_alias(v1.key, "Bad Alias", ENGINEER)
    assert info.value.field == "alias"
    assert [k for *_, k in pending_events(kit)] == [
        AliasChangeKind.SET,
        AliasChangeKind.SET,
        AliasChangeKind.DELETE,
    ]


def test_evaluations_are_idempotent_by_event_and_report_id(kit: Kit) -> None:
    v1 = register(kit)
    ev = verdict(v1.key, True, "report-1")
    assert kit.registry.apply_evaluation(ev, event_id="evt-1", source="t").recorded
    assert not kit.registry.apply_evaluation(ev, event_id="evt-1", source="t").recorded
    assert not kit.registry.apply_evaluation(ev, event_id="evt-2", source="t").recorded  # same report
    assert len(pending_events(kit)) == 1
    assert [e.report_id for e in kit.registry.lineage(v1.key).evaluations] == ["report-1"]


def test_runs_metrics_and_lineage_down_to_a_prediction(kit: Kit) -> None:
    new = NewRun(
        AUTO,
        AUTO,
        run_id="run-42",
        training_request_id="req-1",
        drift_report_id="drift-3",
        params={"lr": "0.003"},
        environment={"python": "3.11", "torch": "2.9.1", "host": "box"},
        code_version="abc123",
        datasets=(DatasetRef(AUTO, "ds-v1", "file:///d"),),
        seed=7,
    )
    run = kit.runs.create(new, ENGINEER)
    assert kit.runs.create(new, ENGINEER).run_id == run.run_id == "run-42"  # idempotent
    with pytest.raises(UnknownUseCase):
        kit.runs.create(NewRun("nope", "nope"), ENGINEER)
    for epoch in (1, 2, 3):
        kit.runs.log_metrics(
            "run-42",
            [
                Metric("loss", 1.0 / epoch, "train", epoch),
                Metric("auc", 0.7 + epoch / 100, "validation", epoch),
            ],
        )
    kit.runs.log_metrics("run-42", [Metric("loss", 0.4, "train", 3)])  # the same point again: replaced
    done = kit.runs.finish(
        "run-42",
        ENGINEER,
        metrics=[Metric("auc", 0.74, "validation")],
        duration_s=12.5,
        features=(FeatureRef(AUTO, "loan_row", "salary", "f1"),),
    )
    assert done.status is RunStatus.FINISHED and done.duration_s == 12.5
    assert kit.runs.finish("run-42", ENGINEER).status is RunStatus.FINISHED
    with pytest.raises(FailedPrecondition):
        kit.runs.log_metrics("run-42", [Metric("loss", 0.1, "train", 4)])
    with pytest.raises(NotFound):
        kit.runs.get("run-x")
    v1 = register(
        kit,
        run_id="run-42",
        training_request_id="req-1",
        drift_report_id="drift-3",
        datasets=new.datasets,
        code_version="abc123",
    )
    kit.registry.apply_evaluation(verdict(v1.key, True, "report-5"))
    kit.registry.index_predictions([PredictionEntry("p-1", AUTO, AUTO, 1, utcnow(), CHAMPION)])
    assert (
        kit.registry.index_predictions(
            [
                PredictionEntry("p-1", AUTO, AUTO, 1, utcnow(), CHAMPION),
                PredictionEntry("p-2", AUTO, AUTO, 1, None, ""),
            ]
        )
        == 1
    )
    lineage = kit.registry.lineage_of_prediction("p-1")
    assert lineage.prediction is not None and lineage.prediction.alias == CHAMPION
    assert (lineage.version.version, lineage.version.drift_report_id) == (1, "drift-3")
    assert lineage.run is not None and lineage.run.code_version == "abc123" and lineage.run.seed == 7
    assert lineage.run.environment["torch"] == "2.9.1"
    assert lineage.run.datasets == new.datasets and lineage.run.features[0].name == "salary"
    losses = [(m.step, m.value) for m in lineage.run.metrics if m.name == "loss"]
    assert losses == [(1, 1.0), (2, 0.5), (3, 0.4)]
    assert [e.report_id for e in lineage.evaluations] == ["report-5"]
    assert {r.action for r in lineage.audit} >= {
        "model_version.registered",
        "model_version.evaluated",
        "alias.promote",
    }
    with pytest.raises(NotFound):
        kit.registry.lineage_of_prediction("p-404")


def test_a_tampered_artifact_is_refused_on_read_export_and_promotion(kit: Kit) -> None:
    v1 = register(kit)
    kit.registry.apply_evaluation(verdict(v1.key, True))  # approved: it may be exported
    v2 = register(kit)  # the same bytes: the same blob
    blob = next((kit.artifacts.root / "sha256").rglob(v1.artifact_sha256))
    blob.write_bytes(b"tampered" + model()[8:])
    with pytest.raises(ArtifactCorrupted):
        kit.artifacts.read(v1.artifact_sha256)
    with pytest.raises(ArtifactCorrupted):
        kit.registry.export(v1.key, ENGINEER)
    assert not (kit.repo / AUTO / "1" / "model.pt").exists()
    # No alias points at a version whose bytes the gateway could not load.
    with pytest.raises(ArtifactCorrupted):
        kit.registry.apply_evaluation(verdict(v2.key, True))
    assert kit.registry.get_version(v2.key).aliases == ()


def test_serving_bundle_names_stored_blobs_and_the_asked_instance_kind(kit: Kit) -> None:
    v1 = register(kit)
    kit.registry.apply_evaluation(verdict(v1.key, True))  # approved: servable
    bundle = kit.registry.serving_bundle(v1.key)
    assert (bundle.model_name, bundle.version) == (AUTO, 1)
    files = {f.path: f for f in bundle.files}
    assert set(files) == {"model.py", "model.pt"}
    assert files["model.pt"].sha256 == v1.artifact_sha256 and files["model.pt"].size == len(model())
    assert kit.artifacts.read(files["model.py"].sha256).decode() == MODEL_PY
    assert bundle.config["backend"] == "python" and bundle.config["name"] == AUTO
    assert bundle.config["instance_group"][0]["kind"] == "KIND_CPU"
    gpu = kit.registry.serving_bundle(v1.key, "gpu")
    assert gpu.config["instance_group"][0]["kind"] == "KIND_GPU" and gpu.files == bundle.files
    with pytest.raises(InvalidArgument) as info:
        kit.registry.serving_bundle(v1.key, "tpu")
    assert info.value.field == "instance_kind"
    with pytest.raises(NotFound):
        kit.registry.serving_bundle(VersionKey(AUTO, AUTO, 9))
    assert not kit.repo.exists()


def test_a_verdict_is_read_from_its_gates_and_only_approved_versions_are_servable(kit: Kit) -> None:
    v1 = register(kit)
    lying = replace(verdict(v1.key, False), passed=True)  # gates failed, flag says passed
    outcome = kit.registry.apply_evaluation(lying)
    assert not outcome.promoted and outcome.version.status is VersionStatus.EVALUATION_FAILED
    assert [e.passed for e in kit.registry.lineage(v1.key).evaluations] == [False]
    v2 = register(kit)  # a candidate, never evaluated
    v3 = register(kit)
    kit.registry.apply_evaluation(verdict(v3.key, True))
    v4 = register(kit)
    kit.registry.apply_evaluation(verdict(v4.key, True))
    kit.registry.rollback(ModelKey(AUTO, AUTO), None, reason="bad")  # v4 archived, v3 champion
    assert kit.registry.get_version(v4.key).status is VersionStatus.ARCHIVED
    for refused in (v1, v2, v4):
        with pytest.raises(FailedPrecondition, match="only an approved version"):
            kit.registry.serving_bundle(refused.key)
        with pytest.raises(FailedPrecondition, match="only an approved version"):
            kit.registry.export(refused.key, ENGINEER)
    assert kit.registry.serving_bundle(v3.key).version == 3
    assert not (kit.repo / AUTO / "1").exists() and not (kit.repo / AUTO / "4").exists()
