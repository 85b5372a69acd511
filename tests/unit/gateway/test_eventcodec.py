"""The byte-level PredictionLogged encoder equals messages built field by field with protobuf."""

from __future__ import annotations

import math

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import events_pb2
from libs.auth.privacy import pseudonym
from libs.bus.wire import varint
from libs.usecase import UseCase, load_default
from services.gateway.eventcodec import PredictionEncoder, RowMeta, value_bytes
from services.gateway.inputs import InputSchema, to_value

UCS = load_default()
SALT = b"salt"


def regression(uc: UseCase) -> UseCase:
    label = uc.label.model_copy(update={"classes": None})
    return uc.model_copy(update={"task": "regression", "label": label})


def oracle(
    schema: InputSchema,
    drop: set[str],
    hashed: set[str],
    pid: str,
    entity: str,
    model: str,
    version: int,
    x: np.ndarray,
    y: np.ndarray | None,
    latency: int,
    trace: str,
    nanos: int,
    alias: str,
    shadow: bool,
) -> events_pb2.PredictionLogged:
    ts = Timestamp()
    ts.FromNanoseconds(nanos)
    event = events_pb2.PredictionLogged(
        prediction_id=pid,
        use_case=schema.use_case,
        entity_id=entity,
        latency_us=latency,
        trace_id=trace,
        timestamp=ts,
        alias=alias,
        shadow=shadow,
        model=common_pb2.ModelRef(use_case=schema.use_case, model_name=model, version=version),
    )
    for name, value in zip(schema.columns, x.tolist(), strict=True):
        if name in drop:
            continue
        if math.isnan(value):
            event.features[name].SetInParent()
        elif name in hashed:
            event.features[name].string_value = pseudonym(value, SALT)
        else:
            event.features[name].double_value = value
    if y is not None:
        primary, named = schema.outputs(y)
        event.output.CopyFrom(to_value(primary))
        for k, v in named.items():
            event.outputs[k].CopyFrom(to_value(v))
    return event


@pytest.mark.parametrize(
    "uc",
    [UCS["loan_approval"], UCS["image_segments"], regression(UCS["loan_approval"])],
    ids=["binary", "multiclass", "regression"],
)
@pytest.mark.parametrize("privacy", [False, True])
def test_encoded_rows_equal_protobuf_messages(uc: UseCase, privacy: bool) -> None:
    schema = InputSchema(uc)
    drop = {schema.columns[2]} if privacy else set()
    hashed = {schema.columns[0]} if privacy else set()
    codec = PredictionEncoder(schema, uc.name, drop, hashed, lambda v: pseudonym(v, SALT))
    rng = np.random.default_rng(1)
    n = 40
    x = rng.normal(0, 1000, size=(n, schema.width)).astype(np.float32)
    x[3, 5] = np.nan
    x[7, :] = np.nan
    y = rng.dirichlet(np.ones(schema.n_outputs), size=n).astype(np.float32)
    for with_outputs in (True, False):
        metas, expected = [], []
        for r in range(n):
            pid, entity = f"pid-{r}", ("" if r % 3 == 0 else f"e{r}")
            latency, trace, nanos = r * 7, ("ab" * 16 if r % 2 else ""), 1_700_000_000_123_456_789 + r
            alias, shadow, version = ("challenger", True, 2) if r % 5 == 0 else ("champion", False, 1)
            metas.append(
                RowMeta(
                    pid,
                    entity,
                    codec.model(uc.name, version),
                    codec.tail(latency, trace, nanos // 10**9, nanos % 10**9, alias, shadow),
                )
            )
            expected.append(
                oracle(
                    schema,
                    drop,
                    hashed,
                    pid,
                    entity,
                    uc.name,
                    version,
                    x[r],
                    y[r] if with_outputs else None,
                    latency,
                    trace,
                    nanos,
                    alias,
                    shadow,
                )
            )
        encoded = codec.encode(metas, x, y if with_outputs else None)
        for r, raw in enumerate(encoded):
            assert events_pb2.PredictionLogged.FromString(raw) == expected[r], f"row {r}"


@pytest.mark.parametrize("value", [None, True, False, 0, 7, -3, 2**40, 1.5, -0.0, "sky", ""])
def test_values_and_varints_match_protobuf(value: object) -> None:
    assert common_pb2.Value.FromString(value_bytes(value)) == to_value(value)  # type: ignore[arg-type]
    for n in (0, 1, 127, 128, 300, 2**35, -1):
        assert common_pb2.Value.FromString(b"\x10" + varint(n)).int64_value == n
