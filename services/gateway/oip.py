"""The Open Inference Protocol (KServe v2 ``inference.GRPCInferenceService``) on the wire.

``ModelInfer`` is the hot path and works on bytes: a request is parsed (upb parses a
small message in microseconds) only to validate it and read what routing needs, and
the caller's own bytes are forwarded with the routed ``model_version`` (and, when the
caller sent none, the prediction ``id``) appended as extra fields: protobuf keeps the
last value of a non-repeated field, so nothing is re-encoded. Triton's reply is
returned as it came. This module holds that byte-level code and the protocol's
checks; the servicer (:mod:`services.gateway.servicer`) and the data plane
(:mod:`services.gateway.core`) use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2

from libs.errors import InvalidArgument

INPUT = "INPUT"
VERSION_TAG = (2 << 3) | 2  # ModelInferRequest.model_version
ID_TAG = (3 << 3) | 2  # ModelInferRequest.id
STREAM_RESPONSE_TAG = (2 << 3) | 2  # ModelStreamInferResponse.infer_response

# Extensions Triton announces that the gateway does not serve, and the methods it refuses.
UNSERVED_EXTENSIONS = frozenset(
    {
        "model_repository",
        "model_repository(unload_dependents)",
        "system_shared_memory",
        "cuda_shared_memory",
        "trace",
        "logging",
    }
)
# At most 18 digits: any such number fits Triton's int64 version.
_MAX_VERSION_DIGITS = 18


def parse_version(text: str) -> int | None:
    """A model version written in ASCII digits, or None: ``str.isdigit`` also takes
    other scripts' digits and superscripts ("²"), on which ``int`` fails or which Triton
    would not know."""
    if text.isascii() and text.isdigit() and len(text) <= _MAX_VERSION_DIGITS:
        return int(text)
    return None


_REGISTRY = "model control belongs to the registry: promote a version there"
_NO_SHM = "shared memory does not cross the gateway"
UNIMPLEMENTED = {
    "RepositoryModelLoad": _REGISTRY,
    "RepositoryModelUnload": _REGISTRY,
    "SystemSharedMemoryStatus": _NO_SHM,
    "SystemSharedMemoryRegister": _NO_SHM,
    "SystemSharedMemoryUnregister": _NO_SHM,
    "CudaSharedMemoryStatus": _NO_SHM,
    "CudaSharedMemoryRegister": _NO_SHM,
    "CudaSharedMemoryUnregister": _NO_SHM,
    "TraceSetting": "not served by the gateway",
    "LogSettings": "not served by the gateway",
}


def encode_field(tag: int, value: bytes) -> bytes:
    """One length-delimited field, encoded (tag byte, varint length, bytes)."""
    n = len(value)
    out = bytearray((tag,))
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + value


def parse(request: bytes) -> Any:
    """The ``ModelInferRequest`` in ``request`` (its tensors are not copied out)."""
    try:
        return service_pb2.ModelInferRequest.FromString(request)
    except DecodeError:
        raise InvalidArgument("request", "not a ModelInferRequest") from None


def validate(msg: Any, width: int) -> tuple[int, bool]:
    """Rows of the request, and whether its rows may be coalesced with others'."""
    inputs = msg.inputs
    if len(inputs) != 1:
        raise InvalidArgument(
            "inputs", f"model {msg.model_name!r} takes one input {INPUT!r}, got {len(inputs)}"
        )
    tensor = inputs[0]
    if tensor.name != INPUT:
        raise InvalidArgument(
            f"inputs.{tensor.name}",
            f"unknown input {tensor.name!r}, model {msg.model_name!r} takes {INPUT!r}",
        )
    where = f"inputs.{INPUT}"
    if tensor.datatype != "FP32":
        raise InvalidArgument(where, f"datatype {tensor.datatype}, expected FP32")
    shape = tensor.shape
    if len(shape) != 2 or shape[1] != width or shape[0] < 1:
        raise InvalidArgument(where, f"shape {list(shape)}, expected [-1, {width}]")
    rows = shape[0]
    raw = msg.raw_input_contents
    if raw:
        if len(raw) != 1 or len(raw[0]) != rows * width * 4:
            raise InvalidArgument(
                where,
                f"{sum(len(r) for r in raw)} bytes of data, expected {rows * width * 4} "
                f"for shape [{rows}, {width}]",
            )
        mergeable = not msg.parameters or (len(msg.parameters) == 1 and "entity_id" in msg.parameters)
        if mergeable and msg.outputs:
            mergeable = all(o.name == "OUTPUT" and not o.parameters for o in msg.outputs)
        return rows, mergeable
    if len(tensor.contents.fp32_contents) != rows * width:
        raise InvalidArgument(where, f"{len(tensor.contents.fp32_contents)} values, expected {rows * width}")
    return rows, False


def routing_key(msg: Any) -> str:
    """What canary stickiness hashes: the request parameter ``entity_id``, else the request id."""
    params = msg.parameters
    return params["entity_id"].string_param if "entity_id" in params else msg.id  # type: ignore[no-any-return]


def rows_bytes(msg: Any) -> bytes:
    """The request's INPUT rows as raw FP32 bytes (validated before)."""
    if msg.raw_input_contents:
        return msg.raw_input_contents[0]  # type: ignore[no-any-return]
    return np.asarray(msg.inputs[0].contents.fp32_contents, dtype=np.float32).tobytes()


def traceparent(metadata: Any) -> str:
    """The caller's W3C trace context ("00-<32 hex trace id>-<span id>-<flags>"), or ""."""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str) and len(value) == 55:
            return value
    return ""
