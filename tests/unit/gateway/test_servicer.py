"""The business API (servicer and data plane) and feedback with fakes: features merged (inline wins), fetched only
when needed, errors per input in a batch, outcomes checked against the label."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import events_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as pb
from libs.errors import InvalidArgument, NotFound
from libs.usecase import load_default
from services.gateway.core import DataPlane
from services.gateway.directory import AliasBook, AliasState
from services.gateway.feedback import FeedbackRecorder, RecentPredictions
from services.gateway.inputs import Scalar, to_value
from services.gateway.models import ModelManager
from services.gateway.servicer import GatewayServicer
from services.gateway.triton import Output, Rows
from tests.unit.gateway.test_inputs import loan_features
from tests.unit.gateway.test_models import FakeSource, FakeTriton

UCS = {"loan_approval": load_default()["loan_approval"]}


class FakeFeatures:
    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def fetch(self, use_case: str, entity_ids: list[str]) -> list[Any]:
        self.asked.append(list(entity_ids))
        rows: list[Any] = []
        for e in entity_ids:
            if e == "missing":
                rows.append(None)
            else:  # as the store serves them: expanded columns
                from services.gateway.inputs import InputSchema

                schema = InputSchema(UCS["loan_approval"])
                rows.append(
                    dict(zip(schema.columns, schema.row(loan_features(age=30)).tolist(), strict=True))
                )
        return rows


class FakeScorer:
    """Triton as the data plane calls it: keeps the rows, answers (0.4, 0.6) for each."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    async def submit(self, model: str, version: str, item: Rows, width: int, max_rows: int = 0) -> Output:
        self.rows.append(np.frombuffer(item.data, dtype=np.float32).reshape(item.rows, width))
        return Output(np.tile(np.array([0.4, 0.6], dtype=np.float32), (item.rows, 1)), version)


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def publish(
        self, topic: str, event: Any, *, use_case: str, key: str | None = None, event_id: str | None = None
    ) -> None:
        self.sent.append((topic, event, key, event_id))


@pytest.fixture
async def parts() -> tuple[GatewayServicer, FakeFeatures, FakeScorer, FakePublisher, RecentPredictions]:
    book = AliasBook()
    models = ModelManager(UCS, book, FakeTriton(), FakeSource(), warmup_requests=0)  # type: ignore[arg-type]
    book.apply(AliasState("loan_approval", "champion", 1))
    await models.wait_idle()
    features, scorer, publisher, recent = FakeFeatures(), FakeScorer(), FakePublisher(), RecentPredictions()
    feedback = FeedbackRecorder(publisher, "fb", UCS, recent)  # type: ignore[arg-type]
    plane = DataPlane(models, scorer, features, None, recent)  # type: ignore[arg-type]
    return GatewayServicer(plane, feedback), features, scorer, publisher, recent


def values(d: Mapping[str, Scalar]) -> dict[str, common_pb2.Value]:
    return {k: to_value(v) for k, v in d.items()}


async def test_inline_features_skip_the_feature_store(parts) -> None:  # type: ignore[no-untyped-def]
    servicer, features, scorer, *_ = parts
    reply = await servicer.Predict(
        pb.PredictRequest(use_case="loan_approval", entity_id="e1", features=values(loan_features())), None
    )
    assert features.asked == [] and reply.prediction.output.double_value == pytest.approx(0.6)
    assert reply.prediction.model.version == 1 and reply.prediction.entity_id == "e1"


async def test_fetched_features_are_overridden_inline(parts) -> None:  # type: ignore[no-untyped-def]
    servicer, features, scorer, *_ = parts
    await servicer.Predict(
        pb.PredictRequest(
            use_case="loan_approval", entity_id="e1", features=values({"age": 99, "elevel": 4})
        ),
        None,
    )
    assert features.asked == [["e1"]]
    from services.gateway.inputs import InputSchema

    schema = InputSchema(UCS["loan_approval"])
    row = scorer.rows[0][0]
    assert row[schema.index["age"]] == 99 and row[schema.index["elevel__4"]] == 1
    assert row[schema.index["elevel__2"]] == 0  # the fetched one-hot columns were replaced


async def test_errors(parts) -> None:  # type: ignore[no-untyped-def]
    servicer, *_ = parts
    with pytest.raises(NotFound):
        await servicer.Predict(pb.PredictRequest(use_case="nope", entity_id="e"), None)
    with pytest.raises(NotFound) as err:
        await servicer.Predict(pb.PredictRequest(use_case="loan_approval", entity_id="missing"), None)
    assert "missing" in err.value.message
    with pytest.raises(InvalidArgument):
        await servicer.PredictBatch(pb.PredictBatchRequest(use_case="loan_approval"), None)
    batch = await servicer.PredictBatch(
        pb.PredictBatchRequest(
            use_case="loan_approval",
            inputs=[
                pb.PredictionInput(entity_id="e1"),
                pb.PredictionInput(entity_id="missing"),
                pb.PredictionInput(features=values(loan_features(car="x"))),
            ],
        ),
        None,
    )
    assert batch.predictions[0].prediction_id and "NOT_FOUND" in batch.predictions[1].error
    assert "inputs[2].features.car" in batch.predictions[2].error


async def test_feedback_fills_in_what_the_gateway_remembers(parts) -> None:  # type: ignore[no-untyped-def]
    servicer, _, _, publisher, recent = parts
    pid = (
        await servicer.Predict(pb.PredictRequest(use_case="loan_approval", entity_id="e7"), None)
    ).prediction.prediction_id
    recent.add(pid, "loan_approval", "e7", 1_700_000_000.0)
    reply = await servicer.RecordFeedback(
        pb.RecordFeedbackRequest(
            prediction_id=pid, outcome=common_pb2.Value(int64_value=0), feedback_id="f1"
        ),
        None,
    )
    assert reply.feedback_id == "f1"
    topic, event, key, event_id = publisher.sent[0]
    assert isinstance(event, events_pb2.FeedbackRecorded)
    assert (topic, key, event_id) == ("fb", pid, "f1")
    assert event.use_case == "loan_approval" and event.entity_id == "e7"
    if "event_time" in event.DESCRIPTOR.fields_by_name:
        assert event.event_time.seconds == 1_700_000_000


@pytest.mark.parametrize(
    ("request_kw", "field"),
    [
        ({"use_case": "loan_approval", "outcome": common_pb2.Value(int64_value=1)}, "prediction_id"),
        # A megabyte-long id is refused before it reaches a lookup or a log line.
        ({"prediction_id": "p" * (1 << 20), "use_case": "loan_approval"}, "prediction_id"),
        ({"prediction_id": "p/../x", "use_case": "loan_approval"}, "prediction_id"),
        ({"prediction_id": "p", "use_case": "loan_approval"}, "outcome"),
        (
            {"prediction_id": "p", "use_case": "loan_approval", "outcome": common_pb2.Value(int64_value=3)},
            "outcome",
        ),
        (
            {"prediction_id": "p", "use_case": "loan_approval", "outcome": common_pb2.Value(null_value=0)},
            "outcome",
        ),
    ],
)
async def test_bad_feedback_names_the_field(parts, request_kw: dict[str, Any], field: str) -> None:  # type: ignore[no-untyped-def]
    servicer, _, _, _, recent = parts
    recent.add("p", "loan_approval", "e1", 1_700_000_000.0)
    with pytest.raises(InvalidArgument) as err:
        await servicer.RecordFeedback(pb.RecordFeedbackRequest(**request_kw), None)
    assert err.value.field == field


async def test_feedback_for_an_unknown_prediction_or_another_use_case_is_not_found(parts) -> None:  # type: ignore[no-untyped-def]
    servicer, _, _, publisher, recent = parts
    recent.add("q", "image_segments", "e1", 1_700_000_000.0)  # another app's prediction
    for kw in ({"prediction_id": "unknown"}, {"prediction_id": "q", "use_case": "loan_approval"}):
        with pytest.raises(NotFound) as err:
            await servicer.RecordFeedback(
                pb.RecordFeedbackRequest(outcome=common_pb2.Value(int64_value=1), **kw), None
            )
        assert "image_segments" not in err.value.message
    assert not publisher.sent


class _Aborted(Exception):
    def __init__(self, code: Any, details: str) -> None:
        super().__init__(code, details)
        self.code, self.details = code, details


class _OipContext:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    async def abort(self, code: Any, details: str) -> None:
        raise _Aborted(code, details)


class _ReadyTriton:
    up = True

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    async def model_ready(self, model: str, version: int) -> bool:
        self.asked.append((model, version))
        return True


@pytest.mark.parametrize("version", ["7", "²", "\u0663"])
async def test_oip_model_ready_of_a_version_not_served_is_not_found(version: str) -> None:
    # "²" and "٣" pass str.isdigit(): they must be NOT_FOUND like any unknown version,
    # not an internal error from int().
    import grpc
    from tritonclient.grpc import service_pb2

    from services.gateway.routing import Routing
    from services.gateway.servicer import OipServicer

    served = SimpleNamespace(use_case="uc", model="uc_model", routing=Routing("uc", champion=3))
    triton = _ReadyTriton()
    oip = OipServicer(None, SimpleNamespace(served={"uc": served}), triton)  # type: ignore[arg-type]
    reply = await oip.model_ready(service_pb2.ModelReadyRequest(name="uc", version="3"), _OipContext())
    assert reply.ready and triton.asked == [("uc_model", 3)]
    with pytest.raises(_Aborted) as refused:
        await oip.model_ready(service_pb2.ModelReadyRequest(name="uc", version=version), _OipContext())
    assert refused.value.code is grpc.StatusCode.NOT_FOUND
    assert "is not served" in refused.value.details and len(triton.asked) == 1
