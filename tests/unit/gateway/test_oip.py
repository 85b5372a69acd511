"""The OIP hot path's byte tricks and checks: appended fields win, inputs are validated."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from services.gateway.oip import _ID_TAG, _VERSION_TAG, OipError, _field, _rows_bytes, _traceparent, _validate


def request(rows: int = 2, width: int = 4, **kw: object) -> service_pb2.ModelInferRequest:
    req = service_pb2.ModelInferRequest(model_name="m", **kw)  # type: ignore[arg-type]
    req.inputs.add(name="INPUT", datatype="FP32", shape=[rows, width])
    req.raw_input_contents.append(np.ones((rows, width), dtype=np.float32).tobytes())
    return req


def test_appended_fields_override_without_reencoding() -> None:
    original = request(model_version="9", id="").SerializeToString()
    forwarded = original + _field(_VERSION_TAG, b"12") + _field(_ID_TAG, b"x" * 200)
    parsed = service_pb2.ModelInferRequest.FromString(forwarded)
    assert parsed.model_version == "12" and parsed.id == "x" * 200  # a 2-byte varint length
    assert parsed.raw_input_contents[0] == request().raw_input_contents[0]


def test_valid_requests_and_which_may_be_coalesced() -> None:
    assert _validate(request(), 4) == (2, True)
    with_entity = request()
    with_entity.parameters["entity_id"].string_param = "e1"
    assert _validate(with_entity, 4) == (2, True)
    with_priority = request()
    with_priority.parameters["priority"].int64_param = 1
    assert _validate(with_priority, 4) == (2, False)
    asks_output = request()
    asks_output.outputs.add(name="OUTPUT")
    assert _validate(asks_output, 4) == (2, True)
    typed = service_pb2.ModelInferRequest(model_name="m")
    typed.inputs.add(name="INPUT", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend([1.0, 2.0])
    assert _validate(typed, 2) == (1, False)
    assert np.frombuffer(_rows_bytes(typed), dtype=np.float32).tolist() == [1.0, 2.0]


@pytest.mark.parametrize(("mutate", "text"), [
    (lambda r: r.inputs.add(name="EXTRA", datatype="FP32", shape=[2, 4]), "one input"),
    (lambda r: setattr(r.inputs[0], "name", "X"), "'X'"),
    (lambda r: setattr(r.inputs[0], "datatype", "INT64"), "datatype INT64"),
    (lambda r: r.inputs[0].shape.__setitem__(1, 5), "expected [-1, 4]"),
    (lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 8), "bytes of data"),
])
def test_invalid_requests_name_the_input(mutate, text: str) -> None:  # type: ignore[no-untyped-def]
    req = request()
    mutate(req)
    with pytest.raises(OipError) as err:
        _validate(req, 4)
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT and text in err.value.message


def test_traceparent_is_read_from_metadata() -> None:
    tp = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert _traceparent((("x", "y"), ("traceparent", tp))) == tp
    assert _traceparent((("traceparent", "garbage"),)) == "" and _traceparent(None) == ""
