"""JSON ⇄ the gateway's messages, for its HTTP/JSON API (:mod:`services.gateway.http`).

Business API bodies become ``aifactory.gateway.v1`` requests (features and outcomes are
plain JSON scalars) and its answers JSON; KServe v2 JSON tensors become the bytes of a
``ModelInferRequest`` (raw contents, as tritonclient sends them) and Triton's reply JSON
lists (a non-finite value as ``null``: NaN is no JSON). Bad input raises
``InvalidArgument`` naming the field, as the gRPC servers do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from tritonclient.grpc import service_pb2

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as pb
from libs.errors import InvalidArgument
from libs.rpc.server import MAX_MESSAGE_BYTES
from services.gateway.inputs import Scalar, from_value, to_value

# KServe v2 datatypes as numpy types (BYTES: strings, length-prefixed on the wire).
DTYPES: Mapping[str, type] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


# -- JSON ⇄ values ---------------------------------------------------------------------


def _obj(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(field, f"expected an object, got {type(value).__name__}")
    return value


def _str(body: Mapping[str, Any], key: str, field: str, *, required: bool = False) -> str:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidArgument(field, "required")
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(field, f"expected a string, got {type(value).__name__}")
    return value


def _known_keys(body: Mapping[str, Any], keys: frozenset[str], where: str) -> None:
    for key in body:
        if key not in keys:
            raise InvalidArgument(f"{where}{key}", "unknown field")


def scalar_value(value: Any, field: str) -> common_pb2.Value:
    """A JSON scalar as a ``Value`` (null: missing)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(field, "must be finite")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise InvalidArgument(field, "integer out of the 64-bit range")
    if value is None or isinstance(value, bool | int | float | str):
        return to_value(value)
    raise InvalidArgument(field, f"expected a number, string, boolean or null, got {type(value).__name__}")


def json_scalar(value: common_pb2.Value) -> Scalar:
    out = from_value(value)
    return None if isinstance(out, float) and not math.isfinite(out) else out


def _features(value: Any, field: str) -> dict[str, common_pb2.Value]:
    if value is None:
        return {}
    return {k: scalar_value(v, f"{field}.{k}") for k, v in _obj(value, field).items()}


def _timestamp(body: Mapping[str, Any], key: str) -> Timestamp | None:
    text = _str(body, key, key)
    if not text:
        return None
    ts = Timestamp()
    try:
        ts.FromJsonString(text)
    except ValueError:
        raise InvalidArgument(key, f"not an RFC 3339 time: {text[:64]!r}") from None
    return ts


_PREDICT = frozenset({"use_case", "entity_id", "features"})
_BATCH = frozenset({"use_case", "inputs"})
_INPUT = frozenset({"entity_id", "features"})
_FEEDBACK = frozenset(
    {
        "use_case",
        "prediction_id",
        "outcome",
        "observed_at",
        "feedback_id",
        "record_id",
        "event_time",
        "entity_id",
    }
)


def predict_request(body: Any) -> pb.PredictRequest:
    body = _obj(body, "body")
    _known_keys(body, _PREDICT, "")
    return pb.PredictRequest(
        use_case=_str(body, "use_case", "use_case", required=True),
        entity_id=_str(body, "entity_id", "entity_id"),
        features=_features(body.get("features"), "features"),
    )


def batch_request(body: Any) -> pb.PredictBatchRequest:
    body = _obj(body, "body")
    _known_keys(body, _BATCH, "")
    items = body.get("inputs")
    if not isinstance(items, list):
        raise InvalidArgument("inputs", "expected a list of inputs")
    inputs = []
    for i, item in enumerate(items):
        item = _obj(item, f"inputs[{i}]")
        _known_keys(item, _INPUT, f"inputs[{i}].")
        inputs.append(
            pb.PredictionInput(
                entity_id=_str(item, "entity_id", f"inputs[{i}].entity_id"),
                features=_features(item.get("features"), f"inputs[{i}].features"),
            )
        )
    return pb.PredictBatchRequest(use_case=_str(body, "use_case", "use_case", required=True), inputs=inputs)


def feedback_request(body: Any) -> pb.RecordFeedbackRequest:
    body = _obj(body, "body")
    _known_keys(body, _FEEDBACK, "")
    msg = pb.RecordFeedbackRequest(
        prediction_id=_str(body, "prediction_id", "prediction_id"),
        use_case=_str(body, "use_case", "use_case"),
        feedback_id=_str(body, "feedback_id", "feedback_id"),
        record_id=_str(body, "record_id", "record_id"),
        entity_id=_str(body, "entity_id", "entity_id"),
    )
    if body.get("outcome") is not None:  # absent or null: the recorder says "required"
        msg.outcome.CopyFrom(scalar_value(body["outcome"], "outcome"))
    for key in ("observed_at", "event_time"):
        ts = _timestamp(body, key)
        if ts is not None:
            getattr(msg, key).CopyFrom(ts)
    return msg


def prediction_json(p: pb.Prediction) -> dict[str, Any]:
    out: dict[str, Any] = {"entity_id": p.entity_id}
    if p.error:
        out["error"] = p.error
        return out
    out.update(
        prediction_id=p.prediction_id,
        model={"use_case": p.model.use_case, "model_name": p.model.model_name, "version": p.model.version},
        output=json_scalar(p.output),
        outputs={k: json_scalar(v) for k, v in p.outputs.items()},
    )
    return out


# -- KServe v2 JSON tensors ⇄ OIP messages ----------------------------------------------

_INFER = frozenset({"id", "parameters", "inputs", "outputs"})
_TENSOR = frozenset({"name", "shape", "datatype", "parameters", "data"})
MAX_ELEMENTS = MAX_MESSAGE_BYTES // 4


def _flatten(data: Any, out: list[Any], field: str) -> None:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        if isinstance(item, dict):
            raise InvalidArgument(field, "expected numbers, strings or booleans")
        out.append(item)
        if len(out) > MAX_ELEMENTS:
            raise InvalidArgument(field, f"more than {MAX_ELEMENTS} values")


def _parameters(body: Mapping[str, Any], field: str, target: Any) -> None:
    raw = body.get("parameters")
    if raw is None:
        return
    for key, value in _obj(raw, field).items():
        if key in ("binary_data", "binary_data_output", "binary_data_size"):
            continue  # the binary extension: answers here are always JSON
        param = target[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            param.int64_param = value
        elif isinstance(value, float) and math.isfinite(value):
            param.double_param = value
        elif isinstance(value, str):
            param.string_param = value
        else:
            raise InvalidArgument(f"{field}.{key}", "expected a string, number or boolean")


def _tensor(tensor: Any, i: int, msg: Any) -> None:
    where = f"inputs[{i}]"
    tensor = _obj(tensor, where)
    _known_keys(tensor, _TENSOR, f"{where}.")
    name = _str(tensor, "name", f"{where}.name", required=True)
    datatype = _str(tensor, "datatype", f"{where}.datatype", required=True)
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape
    ):
        raise InvalidArgument(f"{where}.shape", "expected a list of non-negative integers")
    values: list[Any] = []
    _flatten(tensor.get("data", []), values, f"{where}.data")
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidArgument(f"{where}.data", f"{len(values)} values for shape {shape} ({count} expected)")
    item = msg.inputs.add(name=name, datatype=datatype, shape=shape)
    _parameters(tensor, f"{where}.parameters", item.parameters)
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in values):
            raise InvalidArgument(f"{where}.data", "BYTES data are strings")
        # Raw BYTES: each element as a 4-byte little-endian length, then its bytes.
        encoded = [v.encode() for v in values]
        msg.raw_input_contents.append(b"".join(len(e).to_bytes(4, "little") + e for e in encoded))
        return
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise InvalidArgument(f"{where}.datatype", f"unknown datatype {datatype!r}")
    floating = datatype.startswith("FP")
    for v in values:
        if v is None and floating:
            continue  # null: a missing value (NaN), as the model contract reads it
        if isinstance(v, str) or v is None or (isinstance(v, float) and not floating):
            raise InvalidArgument(f"{where}.data", f"{datatype} data are numbers, got {v!r}"[:200])
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array: np.ndarray = np.array([math.nan if v is None else v for v in values], dtype=dtype)
    except (OverflowError, ValueError, TypeError):
        raise InvalidArgument(f"{where}.data", f"values out of the {datatype} range") from None
    msg.raw_input_contents.append(array.tobytes())


def infer_request(name: str, version: str, body: Any) -> bytes:
    """A v2 JSON inference request as the bytes of a ``ModelInferRequest``."""
    body = _obj(body, "body")
    _known_keys(body, _INFER, "")
    msg = service_pb2.ModelInferRequest(model_name=name, model_version=version, id=_str(body, "id", "id"))
    _parameters(body, "parameters", msg.parameters)
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidArgument("inputs", "expected a list of input tensors")
    for i, tensor in enumerate(tensors):
        _tensor(tensor, i, msg)
    wanted = body.get("outputs") or []
    if not isinstance(wanted, list):
        raise InvalidArgument("outputs", "expected a list of requested outputs")
    for j, out in enumerate(wanted):
        out = _obj(out, f"outputs[{j}]")
        msg.outputs.add(name=_str(out, "name", f"outputs[{j}].name", required=True))
    return msg.SerializeToString()  # type: ignore[no-any-return]


def _param_json(params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, p in params.items():
        kind = p.WhichOneof("parameter_choice")
        if kind is not None:
            out[key] = getattr(p, kind)
    return out


def infer_response_json(reply: bytes) -> dict[str, Any]:
    msg = service_pb2.ModelInferResponse.FromString(reply)
    outputs = []
    for i, out in enumerate(msg.outputs):
        dtype = DTYPES.get(out.datatype)
        if i < len(msg.raw_output_contents) and dtype is not None:
            values = np.frombuffer(msg.raw_output_contents[i], dtype=dtype).tolist()
        else:
            values = [b.decode(errors="replace") for b in out.contents.bytes_contents] or [
                *out.contents.fp32_contents,
                *out.contents.int64_contents,
            ]
        data = [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]
        item: dict[str, Any] = {
            "name": out.name,
            "datatype": out.datatype,
            "shape": list(out.shape),
            "data": data,
        }
        if out.parameters:
            item["parameters"] = _param_json(out.parameters)
        outputs.append(item)
    body: dict[str, Any] = {"model_name": msg.model_name, "model_version": msg.model_version, "id": msg.id}
    if msg.parameters:
        body["parameters"] = _param_json(msg.parameters)
    body["outputs"] = outputs
    return body


def tensor_meta(t: Any) -> dict[str, Any]:
    return {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
