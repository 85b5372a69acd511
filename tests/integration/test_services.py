"""The seven services as separate OS processes: healthy, no stubs, metrics, clean stop."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import symbol_database

from aif.stack import SERVICES, Stack
from libs.rpc.healthcheck import check

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# Away from the defaults, so the test runs beside a `make demo`.
PORT_OFFSET = 11400  # ports above the ephemeral range: see aif.stack.Stack


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    stack = Stack(
        tmp_path_factory.mktemp("services"),
        port_offset=PORT_OFFSET,
        data_root=tmp_path_factory.mktemp("state"),
        env={"AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers},
    )
    stack.start(timeout=90)
    yield stack
    stack.stop()


def test_each_service_is_its_own_healthy_process(stack: Stack) -> None:
    pids = {svc.process.pid for svc in stack.running.values()}
    assert len(pids) == len(SERVICES) == 7
    for name, svc in stack.running.items():
        module = importlib.import_module(f"services.{name}.app")
        assert check(svc.target), name
        assert check(svc.target, module.SERVICE_NAME), name


def _call(channel: grpc.Channel, full_name: str, method, metadata) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    """Call ``method`` with an empty request; the status it answers (OK when it answers)."""
    request_cls = symbol_database.Default().GetSymbol(method.input_type.full_name)
    path = f"/{full_name}/{method.name}"
    ser = request_cls.SerializeToString
    try:
        if method.client_streaming:
            channel.stream_unary(path, request_serializer=ser)(
                iter([request_cls()]), timeout=10, metadata=metadata
            )
        elif method.server_streaming:
            list(
                channel.unary_stream(path, request_serializer=ser)(
                    request_cls(), timeout=10, metadata=metadata
                )
            )
        else:
            channel.unary_unary(path, request_serializer=ser)(request_cls(), timeout=10, metadata=metadata)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_metrics_endpoint_per_service_counts_requests(stack: Stack) -> None:
    for name, svc in stack.running.items():
        full_name = importlib.import_module(f"services.{name}.app").SERVICE_NAME
        method = symbol_database.Default().pool.FindServiceByName(full_name).methods[0]
        with grpc.insecure_channel(svc.target) as channel:
            code = _call(channel, full_name, method, stack.metadata())
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics_port}/metrics", timeout=5) as r:
            body = r.read().decode()
        assert r.status == 200
        line = next(
            x for x in body.splitlines() if x.startswith("aif_rpc_server_requests") and f"/{method.name}" in x
        )
        assert f'rpc_grpc_status_code="{code.name}"' in line and float(line.split()[-1]) >= 1, line


def test_every_method_of_every_service_is_built(stack: Stack) -> None:
    """No stubs: every RPC, given an empty request, answers with a real status, never
    UNIMPLEMENTED and never an unhandled error (INTERNAL/UNKNOWN)."""
    pool = symbol_database.Default().pool
    answers: dict[str, grpc.StatusCode] = {}
    admin = stack.metadata()  # auth is on in every service: an admin token passes it
    for name, svc in stack.running.items():
        full_name = importlib.import_module(f"services.{name}.app").SERVICE_NAME
        with grpc.insecure_channel(svc.target) as channel:
            for method in pool.FindServiceByName(full_name).methods:
                answers[f"{full_name}/{method.name}"] = _call(channel, full_name, method, admin)
    bad = {
        m: c.name
        for m, c in answers.items()
        if c in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    }
    assert not bad, bad
    assert len(answers) >= 36


def test_sigterm_stops_every_service_cleanly(kafka, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack = Stack(
        tmp_path,
        port_offset=PORT_OFFSET + 100,
        data_root=tmp_path / "state",
        env={"AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers},
    )
    stack.start(timeout=90)
    started = time.monotonic()
    codes = stack.stop(timeout=20)
    assert codes == dict.fromkeys(SERVICES, 0)
    assert time.monotonic() - started < 15
    for name in SERVICES:
        assert "stopped" in (tmp_path / f"{name}.log").read_text(), name


def test_bad_setting_stops_the_service_at_start_naming_the_variable() -> None:
    env = {**os.environ, "AIF_GATEWAY_GRPC_PROT": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "services.gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "unknown setting(s) AIF_GATEWAY_GRPC_PROT" in proc.stderr
