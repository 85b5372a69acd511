"""Online reads: feature name resolution, request order, found flags (Feast faked)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from libs.errors import InvalidArgument, NotFound
from libs.usecase import load_default
from services.featurestore.core import FeatureStoreCore
from services.featurestore.store.layout import RECORD_ID
from services.featurestore.store.online import OnlineReader

USECASES = load_default()
UC = USECASES["loan_approval"]


PRESENT, NULL_VALUE, NOT_FOUND = 1, 2, 3  # feast.serving.FieldStatus


@dataclass
class Value:
    """The part of feast.types.Value the reader uses."""

    double_val: float | None = None
    string_val: str | None = None

    def WhichOneof(self, _: str) -> str | None:  # noqa: N802 - protobuf's name
        return "double_val" if self.double_val is not None else "string_val" if self.string_val else None


@dataclass
class Ts:
    seconds: int = 0
    nanos: int = 0


@dataclass
class Vector:
    values: list[Value] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    event_timestamps: list[Ts] = field(default_factory=list)


@dataclass
class Names:
    val: list[str]


@dataclass
class Metadata:
    feature_names: Names


@dataclass
class Response:
    metadata: Metadata
    results: list[Vector]


class FakeStore:
    """Answers like Feast: one vector per feature, entities in the asked order."""

    def __init__(self, rows: dict[str, dict[str, Any]], *, redis_quirk: bool = False) -> None:
        self.rows = rows
        # Feast's Redis store: an unknown entity reads as PRESENT with an empty value.
        self.redis_quirk = redis_quirk
        self.calls: list[list[dict[str, str]]] = []

    def get_online_features(self, features: list[str], entity_rows: list[dict[str, str]]) -> Any:
        self.calls.append(entity_rows)
        names = [f.split(":", 1)[1] for f in features]
        resp = Response(Metadata(Names(names)), [])
        for name in names:
            vec = Vector()
            resp.results.append(vec)
            for row in entity_rows:
                data = self.rows.get(row["applicant_id"])
                if data is None:
                    vec.values.append(Value())
                    vec.statuses.append(PRESENT if self.redis_quirk else NOT_FOUND)
                    vec.event_timestamps.append(Ts())
                    continue
                v = data.get(name)
                vec.values.append(Value(string_val=v) if isinstance(v, str) else Value(double_val=v))
                vec.statuses.append(PRESENT if v is not None else NULL_VALUE)
                vec.event_timestamps.append(Ts(seconds=1_700_000_000))

        class R:
            proto = resp

        return R()


def test_names_resolve_to_columns() -> None:
    reader = OnlineReader(FakeStore({}))
    assert reader.columns(UC, []) == UC.model_inputs()
    assert reader.columns(UC, ["loan_approval:loan_mean_10m", "elevel", "elevel__1"]) == [
        "loan_mean_10m",
        *[f"elevel__{c}" for c in range(5)],
    ]
    with pytest.raises(InvalidArgument, match=r"feature_names\[1\].*'nope'"):
        reader.columns(UC, ["loan", "nope"])
    with pytest.raises(InvalidArgument, match="view"):
        reader.columns(UC, ["other:loan"])


def test_an_unknown_use_case_is_not_found() -> None:
    core = FeatureStoreCore(USECASES, None, None, OnlineReader(FakeStore({})), None, None)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="unknown_uc"):
        core.online("unknown_uc", ["a1"])


@pytest.mark.parametrize("redis_quirk", [False, True])
def test_rows_come_back_in_request_order_with_found_flags(redis_quirk: bool) -> None:
    store = FakeStore(
        {
            "a1": {"loan": 5.0, "loan_mean_10m": None, RECORD_ID: "r9"},
            "a2": {"loan": 7.0, "loan_mean_10m": 6.0, RECORD_ID: "r3"},
        },
        redis_quirk=redis_quirk,
    )
    reader = OnlineReader(store)
    rows = reader.read(UC, ["a2", "zz", "a1", "a2"], ["loan", "loan_mean_10m"])
    assert [r.entity_id for r in rows] == ["a2", "zz", "a1", "a2"]
    assert [r.found for r in rows] == [True, False, True, True]
    assert rows[0].values == {"loan": 7.0, "loan_mean_10m": 6.0} and rows[0].record_id == "r3"
    assert rows[2].values["loan_mean_10m"] is None and rows[2].event_time_us == 1_700_000_000 * 10**6
    assert rows[1].values == {"loan": None, "loan_mean_10m": None} and rows[1].event_time_us is None
    assert len(store.calls[0]) == 3  # each entity asked once
