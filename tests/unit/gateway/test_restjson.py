"""JSON ⇄ the gateway's messages (services/gateway/restjson.py), without a server."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from libs.errors import InvalidArgument
from services.gateway import restjson


def test_v2_json_tensor_becomes_the_raw_request_tritonclient_sends() -> None:
    body = {
        "id": "r1",
        "parameters": {"entity_id": "a1", "binary_data_output": True},
        "inputs": [{"name": "INPUT", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2.5], [None, 4]]}],
        "outputs": [{"name": "OUTPUT"}],
    }
    msg = service_pb2.ModelInferRequest.FromString(restjson.infer_request("loan_approval", "3", body))
    assert (msg.model_name, msg.model_version, msg.id) == ("loan_approval", "3", "r1")
    assert list(msg.inputs[0].shape) == [2, 2] and msg.inputs[0].datatype == "FP32"
    values = np.frombuffer(msg.raw_input_contents[0], dtype=np.float32)
    assert values[:2].tolist() == [1.0, 2.5] and math.isnan(values[2]) and values[3] == 4.0
    # Only the protocol's own parameters go on; the binary extension is not served here.
    assert dict(msg.parameters).keys() == {"entity_id"} and msg.outputs[0].name == "OUTPUT"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"inputs": []}, "inputs"),
        ({"inputs": [{"name": "INPUT", "shape": [1, 2], "datatype": "FP32", "data": [1]}]}, "inputs[0].data"),
        ({"inputs": [{"name": "INPUT", "shape": [1], "datatype": "FP32", "data": ["x"]}]}, "inputs[0].data"),
        ({"inputs": [{"name": "INPUT", "shape": [1], "datatype": "INT8", "data": [1000]}]}, "inputs[0].data"),
        ({"inputs": [{"name": "INPUT", "shape": [-1], "datatype": "FP32", "data": []}]}, "inputs[0].shape"),
        ({"inputs": [{"name": "INPUT", "shape": [1], "datatype": "FP8", "data": [1]}]}, "inputs[0].datatype"),
        ({"inputs": [{"name": "INPUT", "shape": [1], "datatype": "FP32", "data": [{}]}]}, "inputs[0].data"),
        ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, "inputs[0].name"),
        ({"inputs": [{"name": "I", "shape": [1], "datatype": "FP32", "data": [1], "x": 1}]}, "inputs[0].x"),
        ({"inputs": [{"name": "I", "shape": [1], "datatype": "FP32", "data": [1]}], "outputs": 3}, "outputs"),
    ],
)
def test_bad_tensors_are_refused_naming_the_field(body: object, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        restjson.infer_request("m", "", body)
    assert err.value.field == field


def test_non_finite_outputs_are_null_in_json() -> None:
    reply = service_pb2.ModelInferResponse(model_name="m", model_version="1", id="x")
    reply.outputs.add(name="OUTPUT", datatype="FP32", shape=[1, 3])
    reply.raw_output_contents.append(np.array([0.5, np.nan, np.inf], dtype=np.float32).tobytes())
    body = restjson.infer_response_json(reply.SerializeToString())
    assert body["outputs"][0]["data"] == [0.5, None, None] and body["outputs"][0]["shape"] == [1, 3]


def test_business_bodies_become_the_grpc_messages() -> None:
    req = restjson.predict_request(
        {"use_case": "uc", "entity_id": "a1", "features": {"x": 1, "y": 2.5, "z": None}}
    )
    assert (
        req.use_case == "uc" and req.features["x"].int64_value == 1 and req.features["y"].double_value == 2.5
    )
    assert req.features["z"].WhichOneof("kind") == "null_value"
    fb = restjson.feedback_request(
        {"prediction_id": "p", "outcome": True, "observed_at": "2026-12-01T10:00:00Z", "use_case": "uc"}
    )
    assert fb.outcome.bool_value is True and fb.observed_at.seconds > 0
    assert not restjson.feedback_request({"prediction_id": "p"}).HasField(
        "outcome"
    )  # the recorder says "required"
    for body, field in [
        ({"use_case": "uc", "features": {"x": [1]}}, "features.x"),
        ({"use_case": "uc", "features": {"x": 2**64}}, "features.x"),
        ({"use_case": 3}, "use_case"),
        ({"use_case": "uc", "inputs": [{"entity": "a"}]}, "inputs[0].entity"),
    ]:
        with pytest.raises(InvalidArgument) as err:
            (restjson.batch_request if "inputs" in body else restjson.predict_request)(body)
        assert err.value.field == field, body
