"""Every gRPC service of the factory, found from proto/, and a generic way to call any method.

The permission walk uses these so a service or method added to proto/ is walked
(and must be in the permission table) without editing the tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import symbol_database
from google.protobuf.message import Message

PROTO = Path(__file__).resolve().parents[2] / "proto"


@dataclass(frozen=True)
class Method:
    path: str  # /aifactory.x.v1.XService/Method
    request: type[Message]
    client_streaming: bool
    server_streaming: bool


@dataclass(frozen=True)
class Service:
    full_name: str
    add_to_server: Any
    servicer: type
    methods: tuple[Method, ...]


def services() -> list[Service]:
    """Every ``service`` in proto/aifactory/*/v1/*_service.proto with its generated base servicer."""
    found = []
    db = symbol_database.Default()
    for proto in sorted(PROTO.glob("aifactory/*/v1/*_service.proto")):
        module = ".".join(proto.relative_to(PROTO).with_suffix("").parts)
        pb2 = importlib.import_module(module + "_pb2")
        grpc_mod = importlib.import_module(module + "_pb2_grpc")
        for name, descriptor in pb2.DESCRIPTOR.services_by_name.items():
            methods = tuple(
                Method(
                    f"/{descriptor.full_name}/{m.name}",
                    db.GetSymbol(m.input_type.full_name),
                    m.client_streaming,
                    m.server_streaming,
                )
                for m in descriptor.methods
            )
            found.append(
                Service(
                    descriptor.full_name,
                    getattr(grpc_mod, f"add_{name}Servicer_to_server"),
                    getattr(grpc_mod, f"{name}Servicer"),
                    methods,
                )
            )
    return found


def all_methods() -> list[Method]:
    return [m for s in services() for m in s.methods]


def with_use_case(method: Method, path: str | None, use_case: str) -> Message:
    """A request of ``method`` with ``use_case`` at dotted ``path`` (None: an empty request)."""
    request = method.request()
    if path and use_case:
        *parents, leaf = path.split(".")
        target: Any = request
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, use_case)
    return request


async def call(
    channel: grpc.aio.Channel,
    method: Method,
    request: Message | None,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 10,
) -> grpc.StatusCode:
    """Calls any method with one request message; returns the status code (OK when it answered)."""
    request = request if request is not None else method.request()
    ser, de = type(request).SerializeToString, (lambda b: b)
    kwargs: dict[str, Any] = {"metadata": tuple(metadata), "timeout": timeout}
    try:
        if method.client_streaming and method.server_streaming:
            async for _ in channel.stream_stream(method.path, ser, de)(iter([request]), **kwargs):
                pass
        elif method.client_streaming:
            await channel.stream_unary(method.path, ser, de)(iter([request]), **kwargs)
        elif method.server_streaming:
            async for _ in channel.unary_stream(method.path, ser, de)(request, **kwargs):
                pass
        else:
            await channel.unary_unary(method.path, ser, de)(request, **kwargs)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
