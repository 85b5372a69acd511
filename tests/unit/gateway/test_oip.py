"""The OIP hot path's byte tricks and checks: appended fields win, inputs are validated."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from libs.errors import InvalidArgument
from services.gateway.oip import (
    ID_TAG,
    VERSION_TAG,
    encode_field,
    parse_version,
    rows_bytes,
    traceparent,
    validate,
)


def request(rows: int = 2, width: int = 4, **kw: object) -> service_pb2.ModelInferRequest:
    req = service_pb2.ModelInferRequest(model_name="m", **kw)  # type: ignore[arg-type]
    req.inputs.add(name="INPUT", datatype="FP32", shape=[rows, width])
    req.raw_input_contents.append(np.ones((rows, width), dtype=np.float32).tobytes())
    return req


def test_appended_fields_override_without_reencoding() -> None:
    original = request(model_version="9", id="").SerializeToString()
    forwarded = original + encode_field(VERSION_TAG, b"12") + encode_field(ID_TAG, b"x" * 200)
    parsed = service_pb2.ModelInferRequest.FromString(forwarded)
    assert parsed.model_version == "12" and parsed.id == "x" * 200  # a 2-byte varint length
    assert parsed.raw_input_contents[0] == request().raw_input_contents[0]


def test_valid_requests_and_which_may_be_coalesced() -> None:
    assert validate(request(), 4) == (2, True)
    with_entity = request()
    with_entity.parameters["entity_id"].string_param = "e1"
    assert validate(with_entity, 4) == (2, True)
    with_priority = request()
    with_priority.parameters["priority"].int64_param = 1
    assert validate(with_priority, 4) == (2, False)
    asks_output = request()
    asks_output.outputs.add(name="OUTPUT")
    assert validate(asks_output, 4) == (2, True)
    typed = service_pb2.ModelInferRequest(model_name="m")
    typed.inputs.add(name="INPUT", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend([1.0, 2.0])
    assert validate(typed, 2) == (1, False)
    assert np.frombuffer(rows_bytes(typed), dtype=np.float32).tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("mutate", "text"),
    [
        (lambda r: r.inputs.add(name="EXTRA", datatype="FP32", shape=[2, 4]), "one input"),
        (lambda r: setattr(r.inputs[0], "name", "X"), "'X'"),
        (lambda r: setattr(r.inputs[0], "datatype", "INT64"), "datatype INT64"),
        (lambda r: r.inputs[0].shape.__setitem__(1, 5), "expected [-1, 4]"),
        (lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 8), "bytes of data"),
    ],
)
def test_invalid_requests_name_the_input(mutate, text: str) -> None:  # type: ignore[no-untyped-def]
    req = request()
    mutate(req)
    with pytest.raises(InvalidArgument) as err:
        validate(req, 4)
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT and text in err.value.message


def test_traceparent_is_read_from_metadata() -> None:
    tp = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert traceparent((("x", "y"), ("traceparent", tp))) == tp
    assert traceparent((("traceparent", "garbage"),)) == "" and traceparent(None) == ""


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("3", 3),
        ("0012", 12),
        ("9" * 18, int("9" * 18)),
        ("", None),
        ("-1", None),
        (" 3", None),
        ("²", None),  # "²".isdigit() is True; int("²") raises
        ("\u0663", None),  # ARABIC-INDIC DIGIT THREE: int() takes it, Triton would not
        ("9" * 19, None),  # over int64
    ],
)
def test_a_version_is_ascii_digits_only(text: str, version: int | None) -> None:
    assert parse_version(text) == version
