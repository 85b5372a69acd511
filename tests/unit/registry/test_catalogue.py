"""The use-case catalogue the registry owns: apply, list, show, retire on a real database,
each change audited and queued in the outbox as a ``UseCaseChanged`` keyed by use case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from aifactory.registry.v1 import events_pb2 as registry_events
from libs.errors import InvalidArgument, NotFound
from libs.usecase import DEFAULT_DIR
from libs.usecase.catalogue import Catalogue
from libs.usecase.compat import IncompatibleChange, Outcome
from services.registry.audit import verify_chain
from services.registry.catalogue import UseCaseCatalogue
from services.registry.core import utcnow
from services.registry.domain import UseCaseState
from services.registry.store import SqlStore, open_store
from tests.unit.registry.helpers import principal

LOAN = (DEFAULT_DIR / "loan_approval.yaml").read_text()
TOPIC = "test.usecases"
ENGINEER = principal("eve", "ml-engineer", use_case="loan_approval")


def spec(version: int = 1, **sections: dict[str, object]) -> str:
    data = yaml.safe_load(LOAN)
    data["version"] = version
    for key, value in sections.items():
        data[key] = {**data[key], **value}
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{tmp_path / 'registry.db'}", usecases_topic=TOPIC)
    yield store
    store.close()


@pytest.fixture
def catalogue(store: SqlStore) -> UseCaseCatalogue:
    kicks: list[int] = []
    return UseCaseCatalogue(store, Catalogue(), clock=utcnow, on_change=lambda: kicks.append(1))


def events(store: SqlStore) -> list[registry_events.UseCaseChanged]:
    out = []
    for _, outgoing in store.pending():
        if outgoing.topic == TOPIC:
            assert outgoing.key == outgoing.event.use_case == outgoing.use_case  # keyed by use case
            out.append(outgoing.event)
    return out


def actions(store: SqlStore) -> list[str]:
    return [r.action for r in store.audit_chain()]


def test_apply_creates_audits_and_publishes(catalogue: UseCaseCatalogue, store: SqlStore) -> None:
    result = catalogue.apply("loan_approval", LOAN, ENGINEER, reason="onboarding")

    assert result.outcome is Outcome.CREATED and result.audit_event_id
    assert result.record.version == 1 and result.record.state is UseCaseState.ACTIVE
    assert result.record.created_by.subject == "eve" and result.record.spec_yaml == LOAN
    # Known at once by the registry itself, before the event goes out.
    assert "loan_approval" in catalogue.usecases.usecases
    (event,) = events(store)
    assert event.state == registry_events.USE_CASE_STATE_ACTIVE and event.spec_yaml == LOAN
    assert event.audit_event_id == result.audit_event_id and event.reason == "onboarding"
    (entry,) = [r for r in store.audit_chain() if r.action == "usecase.created"]
    assert entry.use_case == "loan_approval" and entry.actor.subject == "eve"
    assert entry.details["spec_version"] == 1 and entry.details["spec_sha256"] == result.record.spec_sha256


def test_the_same_spec_again_changes_nothing(catalogue: UseCaseCatalogue, store: SqlStore) -> None:
    catalogue.apply("loan_approval", LOAN, ENGINEER)
    again = catalogue.apply("loan_approval", LOAN + "\n# a comment only\n", ENGINEER)
    assert again.outcome is Outcome.UNCHANGED and not again.audit_event_id
    assert len(events(store)) == 1 and actions(store) == ["usecase.created"]


def test_a_compatible_version_is_applied_and_kept_beside_the_first(
    catalogue: UseCaseCatalogue, store: SqlStore
) -> None:
    catalogue.apply("loan_approval", LOAN, ENGINEER)
    v2 = spec(2, drift={"psi_threshold": 0.3}, deployment={"strategy": "canary"})

    dry = catalogue.apply("loan_approval", v2, ENGINEER, dry_run=True)
    assert dry.outcome is Outcome.UPDATED and not dry.audit_event_id
    assert catalogue.get("loan_approval").version == 1  # a dry run writes nothing

    result = catalogue.apply("loan_approval", v2, ENGINEER, reason="calmer drift alarms")
    assert result.outcome is Outcome.UPDATED
    assert [c.field for c in result.changes] == ["drift.psi_threshold", "deployment.strategy"]
    assert catalogue.usecases.usecases["loan_approval"].drift.psi_threshold == 0.3
    assert catalogue.get("loan_approval").version == 2
    assert catalogue.get("loan_approval", 1).spec_yaml == LOAN  # every version is kept
    assert [e.version for e in events(store)] == [1, 2]
    updated = [r for r in store.audit_chain() if r.action == "usecase.updated"]
    assert updated[0].details["changes"] == ["drift.psi_threshold", "deployment.strategy"]


def test_a_change_that_needs_a_new_model_is_refused_and_writes_nothing(
    catalogue: UseCaseCatalogue, store: SqlStore
) -> None:
    catalogue.apply("loan_approval", LOAN, ENGINEER)
    with pytest.raises(IncompatibleChange) as err:
        catalogue.apply("loan_approval", spec(2, features={"ttl": "7d"}), ENGINEER)
    assert err.value.field == "features.ttl"
    assert catalogue.get("loan_approval").version == 1 and len(events(store)) == 1


def test_bad_requests_name_their_field(catalogue: UseCaseCatalogue) -> None:
    with pytest.raises(InvalidArgument, match="use_case: 'fraud' is not the spec's name"):
        catalogue.apply("fraud", LOAN, ENGINEER)
    with pytest.raises(InvalidArgument) as err:
        catalogue.apply("loan_approval", LOAN.replace("task: binary", "task: nonsense"), ENGINEER)
    assert err.value.field == "task"
    catalogue.apply("loan_approval", spec(3), ENGINEER)
    with pytest.raises(InvalidArgument, match="older than the applied version 3"):
        catalogue.apply("loan_approval", spec(2), ENGINEER)
    with pytest.raises(NotFound):
        catalogue.get("nope")


def test_retire_and_come_back(catalogue: UseCaseCatalogue, store: SqlStore) -> None:
    catalogue.apply("loan_approval", LOAN, ENGINEER)
    record, audit_id = catalogue.retire("loan_approval", principal("ann", "approver"), reason="replaced")
    assert record.state is UseCaseState.RETIRED and audit_id
    assert "loan_approval" not in catalogue.usecases.usecases
    assert catalogue.list() == [] and [r.name for r in catalogue.list(include_retired=True)] == [
        "loan_approval"
    ]
    assert events(store)[-1].state == registry_events.USE_CASE_STATE_RETIRED
    assert catalogue.retire("loan_approval", None)[1] == ""  # retired already: nothing more
    with pytest.raises(NotFound):
        catalogue.retire("nope", None)

    back = catalogue.apply("loan_approval", LOAN, ENGINEER)
    assert back.outcome is Outcome.UPDATED and back.record.state is UseCaseState.ACTIVE
    assert actions(store) == ["usecase.created", "usecase.retired", "usecase.reactivated"]
    report = verify_chain(store.audit_chain(), store.audit_head())
    assert report.valid, report.message


def test_a_restarted_registry_loads_the_active_ones(catalogue: UseCaseCatalogue, store: SqlStore) -> None:
    catalogue.apply("loan_approval", LOAN, ENGINEER)
    segments = (DEFAULT_DIR / "image_segments.yaml").read_text()
    catalogue.apply("image_segments", segments, None)
    catalogue.retire("image_segments", None)

    restarted = UseCaseCatalogue(store, Catalogue(), clock=utcnow)
    assert restarted.load() == 1
    assert list(restarted.usecases.usecases) == ["loan_approval"]
    assert restarted.usecases.retired.keys() == {"image_segments"}
