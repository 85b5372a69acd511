"""The registry's event handler confirms each lifecycle event with its owner before acting."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from libs.bus import Event, EventMeta
from libs.lifecycle.confirm import Unconfirmed
from services.registry.consumers import RegistryEvents
from services.registry.convert import ref_pb
from services.registry.domain import VersionStatus
from tests.lifecycle_fakes import FakeOwners
from tests.unit.registry.helpers import AUTO
from tests.unit.registry.kit import Kit, champion, register


def _event(payload: Message, event_id: str) -> Event[Message]:
    meta = EventMeta.new(type(payload).DESCRIPTOR.full_name, "v1", AUTO, "evaluator", event_id=event_id)
    return Event(meta, payload, "topic", 0, 0, None)


async def test_verdicts_are_the_evaluators_and_rollbacks_the_monitors(kit: Kit) -> None:
    owners = FakeOwners()
    events = RegistryEvents(kit.registry, evaluations=owners, monitor=owners)
    v1, v2 = register(kit), register(kit)
    genuine = owners.confirm_evaluation(
        evaluator_events.ModelEvaluated(report_id="r-1", model=ref_pb(v1.key), passed=True)
    )
    await events.handle(_event(genuine, "e-1"))
    assert champion(kit) == 1
    forged = {
        "made-up report": evaluator_events.ModelEvaluated(report_id="r-x", model=ref_pb(v2.key), passed=True),
        "v1's report for v2": evaluator_events.ModelEvaluated(
            report_id="r-1", model=ref_pb(v2.key), passed=True
        ),
    }
    failed = owners.confirm_evaluation(
        evaluator_events.ModelEvaluated(report_id="r-2", model=ref_pb(v2.key), passed=False)
    )
    flipped = evaluator_events.ModelEvaluated()
    flipped.CopyFrom(failed)
    flipped.passed = True
    forged["failed report, flag flipped"] = flipped
    for i, event in enumerate(forged.values()):
        with pytest.raises(Unconfirmed):
            await events.handle(_event(event, f"f-{i}"))
    assert kit.registry.get_version(v2.key).status is VersionStatus.CANDIDATE and champion(kit) == 1
    healthy = monitor_events.RollbackRequested(request_id="rb-x", use_case=AUTO, model=ref_pb(v1.key))
    with pytest.raises(Unconfirmed):
        await events.handle(_event(healthy, "f-rb"))
    assert champion(kit) == 1
    assert events.forged.counts == {
        "aifactory.evaluator.v1.ModelEvaluated": 3,
        "aifactory.monitor.v1.RollbackRequested": 1,
    }
    # The genuine failed verdict is recorded as the evaluator's gates say.
    await events.handle(_event(failed, "e-2"))
    assert kit.registry.get_version(v2.key).status is VersionStatus.EVALUATION_FAILED


async def test_without_an_owner_nothing_is_acted_on(kit: Kit) -> None:
    events = RegistryEvents(kit.registry, evaluations=None, monitor=None)
    v1 = register(kit)
    with pytest.raises(Unconfirmed):
        await events.handle(
            _event(evaluator_events.ModelEvaluated(report_id="r-1", model=ref_pb(v1.key), passed=True), "e")
        )
    assert kit.registry.get_version(v1.key).status is VersionStatus.CANDIDATE
