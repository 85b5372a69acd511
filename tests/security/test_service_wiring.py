"""The seven services as `make demo` runs them: auth on in every process, refusals counted on
each Prometheus endpoint, and no token in any service log."""

from __future__ import annotations

import importlib
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import symbol_database

from aif.stack import SERVICES, Stack
from libs.auth import DevAuth, server_security
from libs.errors import ConfigError
from libs.settings import load_settings
from tests.security.conftest import record

# Away from the demo's ports and from tests/integration/test_services.py's.
PORT_OFFSET = 11600  # ports above the ephemeral range: see aif.stack.Stack
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    auth = DevAuth(tmp_path_factory.mktemp("stack-auth"))
    stack = Stack(
        tmp_path_factory.mktemp("stack-logs"),
        port_offset=PORT_OFFSET,
        env={"AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers},
        auth=auth,
    )
    stack.start(timeout=120)
    yield stack
    stack.stop()


def _first_method(name: str) -> tuple[str, type]:
    full_name = importlib.import_module(f"services.{name}.app").SERVICE_NAME
    method = symbol_database.Default().pool.FindServiceByName(full_name).methods[0]
    request = symbol_database.Default().GetSymbol(method.input_type.full_name)
    return f"/{full_name}/{method.name}", request, method.client_streaming  # type: ignore[return-value]


def _code(target: str, name: str, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    path, request, streaming = _first_method(name)  # type: ignore[misc]
    with grpc.insecure_channel(target) as channel:
        call = (channel.stream_unary if streaming else channel.unary_unary)(
            path, request_serializer=request.SerializeToString
        )
        try:
            call(iter([request()]) if streaming else request(), metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_every_service_process_requires_a_token_and_counts_refusals(stack: Stack) -> None:
    tokens = []
    for name, svc in stack.running.items():
        admin = stack.metadata("e2e-admin")
        nobody = stack.metadata("e2e-producer", {"*": ["producer"]})
        tokens += [admin[0][1], nobody[0][1]]
        assert _code(svc.target, name, ()) == grpc.StatusCode.UNAUTHENTICATED, name
        assert _code(svc.target, name, admin) not in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        ), name
        if name != "ingestion":  # producers may ingest; nothing else
            assert _code(svc.target, name, nobody) == grpc.StatusCode.PERMISSION_DENIED, name
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5) as reply:
            body = reply.read().decode()
        assert re.search(r'aif_auth_denied_total\{.*reason="missing_token".*\} [1-9]', body), name
    record("permission_checks", 3 * len(stack.running))
    # Every line every service wrote so far: no token, whole or in part.
    lines = 0
    for svc in stack.running.values():
        text = svc.log_path.read_text()
        lines += len(text.splitlines())
        assert not JWT.search(text), f"{svc.log_path} holds a token"
        for token in tokens:
            assert token.split(".")[2] not in text
    record("log_lines_searched", lines)


@pytest.mark.parametrize("name", list(SERVICES))
async def test_build_wires_auth_from_settings(name: str, tmp_path: Path) -> None:
    """Every service's build passes server_security(settings): a missing key stops it at start,
    and AIF_AUTH_MODE=off is the only way to run it open."""
    settings_mod = importlib.import_module(f"services.{name}.settings")
    # The service's own class, not a shared mixin the module imports.
    cls = next(
        v
        for k, v in vars(settings_mod).items()
        if k.endswith("Settings") and getattr(v, "__module__", "") == settings_mod.__name__
    )
    with pytest.raises(ConfigError, match="aif token keygen"):
        server_security(load_settings(cls, {"AIF_AUTH_DIR": str(tmp_path)}))
    assert load_settings(cls, {}).auth_mode == "jwt", "auth is on unless switched off"
    off = server_security(load_settings(cls, {"AIF_AUTH_MODE": "off"}))
    assert off.authorizer is None
    source = Path(importlib.import_module(f"services.{name}.app").__file__ or "").read_text()
    assert "server_security(settings)" in source, f"services/{name}/app.py builds an open server"
