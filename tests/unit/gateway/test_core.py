"""The data plane's business scoring with a fake Triton: rows split by route (canary) and by the model's max
batch still come back in the caller's order, each with the version that scored it, and
the prediction log gets one entry per route with that route's rows."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from libs.errors import NotFound
from services.gateway.core import DataPlane
from services.gateway.feedback import RecentPredictions
from services.gateway.routing import Routing
from services.gateway.triton import Output, Rows


@dataclass
class _Schema:
    width: int = 2


@dataclass
class _Served:
    use_case: str = "uc"
    model: str = "uc_model"
    max_batch: int = 4
    schema: _Schema = field(default_factory=_Schema)
    routing: Routing | None = None


class _Models:
    def __init__(self, routing: Routing, max_batch: int) -> None:
        self.served = _Served(max_batch=max_batch, routing=routing)
        self.inflight: defaultdict[tuple[str, int], int] = defaultdict(int)

    def routing(self, use_case: str) -> tuple[_Served, Routing]:
        assert self.served.routing is not None
        return self.served, self.served.routing

    def get(self, use_case: str) -> _Served:
        return self.served


class _Triton:
    """Answers each row with (first input value, version): order and version are checkable."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def submit(self, model: str, version: str, item: Rows, width: int, max_rows: int = 0) -> Output:
        assert item.rows <= max_rows
        self.calls.append((version, item.rows))
        rows = np.frombuffer(item.data, dtype=np.float32).reshape(item.rows, width)
        return Output(
            np.stack([rows[:, 0], np.full(item.rows, float(version), dtype=np.float32)], axis=1), version
        )


class _Log:
    def __init__(self) -> None:
        self.entries: list[Any] = []

    def offer(self, served: Any) -> bool:
        self.entries.append(served)
        return True


def _scorer(routing: Routing, max_batch: int = 4) -> tuple[DataPlane, _Triton, _Log]:
    triton, log = _Triton(), _Log()
    plane = DataPlane(_Models(routing, max_batch), triton, None, log, RecentPredictions())  # type: ignore[arg-type]
    return plane, triton, log


def _rows(n: int) -> np.ndarray:
    return np.stack([np.arange(n, dtype=np.float32), np.zeros(n, dtype=np.float32)], axis=1)


async def test_one_route_one_call() -> None:
    scorer, triton, log = _scorer(Routing("uc", champion=3))
    scored = await scorer.score("uc", _rows(3), ["a", "b", "c"])
    assert triton.calls == [("3", 3)]
    assert [float(s.output[0]) for s in scored] == [0.0, 1.0, 2.0]
    assert {s.version for s in scored} == {3}
    assert len(log.entries) == 1 and log.entries[0].entity_ids == ["a", "b", "c"]
    assert [e.prediction_ids for e in log.entries] == [[s.prediction_id for s in scored]]


async def test_rows_beyond_the_max_batch_go_in_several_calls_in_order() -> None:
    scorer, triton, _ = _scorer(Routing("uc", champion=1), max_batch=4)
    scored = await scorer.score("uc", _rows(10), [""] * 10)
    assert sorted(rows for _, rows in triton.calls) == [2, 4, 4]
    assert [float(s.output[0]) for s in scored] == [float(i) for i in range(10)]


async def test_a_canary_splits_rows_and_keeps_each_row_with_its_version() -> None:
    routing = Routing("uc", champion=1, challenger=2, strategy="canary", canary_share=0.5)
    entities = [f"e{i}" for i in range(40)]
    expected = {e: routing.route(e).version for e in entities}
    assert set(expected.values()) == {1, 2}
    scorer, _, log = _scorer(routing, max_batch=256)
    scored = await scorer.score("uc", _rows(40), entities)
    for i, (entity, s) in enumerate(zip(entities, scored, strict=True)):
        assert float(s.output[0]) == float(i)  # the caller's order
        assert s.version == expected[entity] == int(s.output[1])
    assert len(log.entries) == 2
    for entry in log.entries:
        assert all(expected[e] == entry.version for e in entry.entity_ids)
        assert list(entry.inputs[:, 0]) == [float(entities.index(e)) for e in entry.entity_ids]


@pytest.mark.parametrize("pinned", ["7", "²", "\u0663", "3.0"])
async def test_an_oip_call_pinning_a_version_not_served_is_not_found(pinned: str) -> None:
    # "²" and "٣" pass str.isdigit(); they must answer NOT_FOUND like any unknown version,
    # not fail in int() (an internal error).
    models, triton, log = _Models(Routing("uc", champion=3), 4), _Triton(), _Log()
    plane = DataPlane(models, triton, None, log, RecentPredictions())  # type: ignore[arg-type]
    msg = service_pb2.ModelInferRequest(model_name="uc", model_version=pinned)
    msg.inputs.add(name="INPUT", datatype="FP32", shape=[1, 2])
    msg.raw_input_contents.append(_rows(1).tobytes())
    with pytest.raises(NotFound, match="is not served"):
        await plane.infer(models.served, msg, msg.SerializeToString())  # type: ignore[arg-type]
    assert triton.calls == [] and log.entries == []
