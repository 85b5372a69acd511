"""Feedback for a prediction this gateway process did not serve (another replica served it,
or this one before a kill -9): the gateway asks the registry's prediction index, over real
gRPC, for the use case, entity and time the app left out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import events_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as pb
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs.errors import NotFound, Unavailable
from libs.rpc import RpcServer, insecure_channel
from libs.telemetry import setup_telemetry
from services.gateway.feedback import FeedbackRecorder, RecentPredictions, RegistryPredictions
from services.registry.domain import CHAMPION, PredictionEntry
from services.registry.servicer import RegistryServicer
from tests.unit.gateway.test_servicer import UCS, FakePublisher
from tests.unit.registry.kit import open_kit

UC = "loan_approval"
SERVED_AT = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


@pytest.fixture
async def registry_target(tmp_path: Path) -> AsyncIterator[tuple[str, RpcServer]]:
    with open_kit(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path) as kit:
        kit.registry.index_predictions(
            [
                PredictionEntry("p-9", UC, UC, 3, SERVED_AT, CHAMPION, entity_id="e-42"),
                PredictionEntry("p-9", UC, UC, 4, SERVED_AT, "challenger", shadow=True, entity_id="e-42"),
            ]
        )
        server = RpcServer("127.0.0.1:0", setup_telemetry("test"))
        server.add_service(
            reg_grpc.add_RegistryServiceServicer_to_server,
            RegistryServicer(kit.registry, kit.runs, kit.artifacts),
            reg_pb.DESCRIPTOR.services_by_name["RegistryService"].full_name,
        )
        port = await server.start()
        try:
            yield f"127.0.0.1:{port}", server
        finally:
            await server.stop()


def _feedback(prediction_id: str, **kw: object) -> pb.RecordFeedbackRequest:
    return pb.RecordFeedbackRequest(
        prediction_id=prediction_id, outcome=common_pb2.Value(int64_value=1), **kw
    )


async def test_a_fresh_gateway_fills_in_feedback_from_the_registrys_index(
    registry_target: tuple[str, RpcServer],
) -> None:
    target, server = registry_target
    publisher, recent = FakePublisher(), RecentPredictions()
    recorder = FeedbackRecorder(publisher, "fb", UCS, recent, lookup_wait_s=0.3)  # type: ignore[arg-type]
    async with insecure_channel(target) as channel:
        recorder.lookup = RegistryPredictions(channel)
        await recorder.record(_feedback("p-9", feedback_id="f1"))
        (_, event, key, event_id), *_ = publisher.sent
        assert isinstance(event, events_pb2.FeedbackRecorded) and (key, event_id) == ("p-9", "f1")
        # The served prediction's, not the shadow's; its time becomes the example's event time.
        assert (event.use_case, event.entity_id) == (UC, "e-42")
        assert event.event_time.ToDatetime(UTC) == SERVED_AT
        assert recent.get("p-9") is not None  # asked once, then remembered

        # Not indexed (after the lookup's wait): refused, whatever the app says; nothing is
        # recorded for a prediction nobody made.
        sent = len(publisher.sent)
        for kw in ({}, {"use_case": UC, "entity_id": "e-1"}):
            with pytest.raises(NotFound):
                await recorder.record(_feedback("p-404", **kw))
        assert len(publisher.sent) == sent

        # The registry away: UNAVAILABLE, which the app retries (not recorded unchecked).
        await server.stop()
        with pytest.raises(Unavailable):
            await recorder.record(_feedback("p-10", use_case=UC))
        assert len(publisher.sent) == sent
