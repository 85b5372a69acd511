"""``python -m aif.multihost.client {smoke,run}``: what the app host does, on that host.

Run by :mod:`aif.multihost.layout` on the ``client`` host, as its user, with only its own
token file (``$HOME/credentials/token``) and the public key. Every address it uses is a
name from its /etc/hosts.

``smoke``: names resolve to the layout's addresses; Kafka answers on ``kafka:9092`` and
advertises that name; PostgreSQL and Redis refuse a client without a password;
Triton is live; the machine's own infrastructure on 127.0.0.1 is out of reach. ``run``: waits
for the seven services, checks that one refuses a call without a token, onboards the
loan-approval use case and then a second one into the running factory with ``aif usecase
apply`` (each taken up by every service), then drives the closed loop with
:class:`aif.loop.LoopDriver` and writes ``$HOME/result.json``. Prints as ``make demo`` does;
the last line of ``run`` is the loop's one-line summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from aif.multihost.topology import HOSTS
from aif.stack import SERVICES

KAFKA = "kafka:9092"
USECASES = Path(__file__).resolve().parents[2] / "deploy" / "usecases"
# The second use case, onboarded while the factory runs (the loop drives the first).
SECOND_USECASE = "image_segments"


def targets() -> dict[str, str]:
    return {name: f"{name}:{ports[0]}" for name, ports in SERVICES.items()}


def token() -> str:
    return (Path(os.environ["HOME"]) / "credentials" / "token").read_text().strip()


def _check(label: str, ok: bool, detail: str = "") -> bool:
    print(f"    {'ok  ' if ok else 'FAIL'} {label}{f': {detail}' if detail else ''}", flush=True)
    return ok


def smoke() -> int:
    import psycopg
    import redis
    import tritonclient.grpc as grpcclient

    from aif.infra import _proc
    from aif.infra.kafka import metadata_ready

    wrong = [
        f"{h.name}={socket.gethostbyname(h.name)}" for h in HOSTS if socket.gethostbyname(h.name) != h.address
    ]
    ok = _check(
        f"the {len(HOSTS)} host names resolve from /etc/hosts ({HOSTS[0].name} {HOSTS[0].address} ... "
        f"{HOSTS[-1].name} {HOSTS[-1].address})",
        not wrong,
        ", ".join(wrong),
    )

    async def brokers() -> list[str]:
        from aiokafka.client import AIOKafkaClient

        await metadata_ready(KAFKA)
        client = AIOKafkaClient(bootstrap_servers=KAFKA, request_timeout_ms=5000)
        await client.bootstrap()
        try:
            return [f"{b.host}:{b.port}" for b in client.cluster.brokers()]
        finally:
            await client.close()

    listed = asyncio.run(brokers())
    ok &= _check("kafka:9092 answers and advertises kafka:9092", listed == [KAFKA], str(listed))
    try:
        psycopg.connect("postgresql://aif_registry@postgres:5432/aif_registry", connect_timeout=5).close()
        ok &= _check("postgres:5432 refuses a login without a password", False, "it let us in")
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1].rsplit(" failed: ", 1)[-1]
        ok &= _check("postgres:5432 refuses a login without a password", "password" in reason, reason)
    try:
        redis.Redis(host="redis", port=6379, socket_timeout=5).ping()
        ok &= _check("redis:6379 refuses a command without the password", False, "PING answered")
    except redis.AuthenticationError as exc:
        ok &= _check("redis:6379 refuses a command without the password", True, type(exc).__name__)
    triton = grpcclient.InferenceServerClient("triton:8001")
    ok &= _check("triton:8001 is live and ready", triton.is_server_live() and triton.is_server_ready())
    triton.close()
    ok &= _check(
        "the machine's own Kafka (127.0.0.1:9092) is out of reach from this host",
        not _proc.port_open("127.0.0.1", 9092),
    )
    return 0 if ok else 1


def _wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f}s")
        time.sleep(0.3)
    return time.monotonic() - started


def wait_services(timeout: float) -> None:
    from libs.rpc.healthcheck import check

    pending = dict(targets())

    def all_serving() -> bool:
        for name, target in list(pending.items()):
            if check(target, timeout=1.0):
                pending.pop(name)
        return not pending

    try:
        took = _wait("services SERVING", all_serving, timeout)
    except TimeoutError:
        raise TimeoutError(f"not SERVING after {timeout:.0f}s: {', '.join(pending)}") from None
    print(f"    7 services SERVING over the network, {took:.1f}s after the first probe", flush=True)


def auth_refused() -> bool:
    import grpc

    from aifactory.registry.v1 import registry_service_pb2 as pb
    from aifactory.registry.v1 import registry_service_pb2_grpc as pb_grpc
    from libs.auth.tls import env_client_tls
    from libs.rpc import blocking_channel

    # Over mutual TLS when the layout gives this host a certificate (AIF_CLIENT_TLS_*).
    with blocking_channel(targets()["registry"], env_client_tls()) as channel:
        try:
            pb_grpc.RegistryServiceStub(channel).ListUseCases(pb.ListUseCasesRequest(), timeout=10)
        except grpc.RpcError as exc:
            return _check(
                "registry refuses a call without a token",
                exc.code() == grpc.StatusCode.UNAUTHENTICATED,
                exc.code().name,
            )  # type: ignore[attr-defined]
    return _check("registry refuses a call without a token", False, "it answered")


def apply(name: str, timeout: float) -> float:
    """``aif usecase apply`` (the real command), then until every service took it up."""
    from libs.rpc.healthcheck import check
    from libs.usecase.catalogue import health_name

    started = time.monotonic()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "aif"),
            "usecase",
            "apply",
            str(USECASES / f"{name}.yaml"),
            "--target",
            targets()["registry"],
            "--reason",
            "aif.multihost: onboarded while the factory runs",
        ],
        env={**os.environ, "AIF_TOKEN": token()},
        capture_output=True,
        text=True,
        check=False,
    )
    for line in (done.stdout + done.stderr).strip().splitlines():
        print(f"    aif usecase apply: {line}", flush=True)
    if done.returncode != 0:
        raise RuntimeError(f"aif usecase apply {name} exited {done.returncode}")
    pending = set(targets().values())

    def taken_up() -> bool:
        for target in list(pending):
            if check(target, health_name(name), timeout=1.0):
                pending.discard(target)
        return not pending

    try:
        _wait(f"use case {name} taken up", taken_up, timeout)
    except TimeoutError:
        raise TimeoutError(
            f"use case {name} not taken up after {timeout:.0f}s by {sorted(pending)}"
        ) from None
    took = time.monotonic() - started
    print(f"    {name}: applied and taken up by all 7 services in {took:.1f}s", flush=True)
    return took


def first_model_seconds(entries: list[tuple[float, str]], v1: int) -> float | None:
    """History ingested → v1 serving (train, evaluate, promote, load into Triton)."""
    start = next((at for at, what in entries if "ingested" in what), None)
    end = next((at for at, what in entries if what.startswith(f"v{v1} serving")), None)
    return None if start is None or end is None else end - start


def run_loop(config_json: str) -> dict[str, object]:
    from aif.loop import LoopConfig, LoopDriver, LoopResult, report

    config = LoopConfig(**json.loads(config_json))
    metadata = (("authorization", f"Bearer {token()}"),)

    async def drive() -> LoopResult:
        async with LoopDriver(
            KAFKA, targets(), metadata, config, say=lambda m: print(m, flush=True)
        ) as driver:
            return await driver.run()

    started = time.monotonic()
    result = asyncio.run(drive())
    wall = time.monotonic() - started
    print()
    print(report.timeline(result))
    print()
    print(report.quality_table(result))
    print()
    print(report.lineage(result.lineage))
    return {
        "closed": result.closed,
        "summary": report.summary(result),
        "loop_wall_s": wall,
        "serving_after_s": result.serving_after_s,
        "detected_after_s": result.detected_after_s,
        "detected_at_index": result.detected_at_index,
        "false_alarms": result.false_alarms,
        "recovered_ratio": result.recovered_ratio,
        "v1": result.v1,
        "v2": result.v2,
        "first_model_s": first_model_seconds(result.timeline.entries, result.v1),
        "causal": result.causal,
        "audit_valid": result.audit_valid,
    }


def run(config_json: str, service_timeout: float) -> int:
    out = Path(os.environ["HOME"]) / "result.json"
    result: dict[str, object] = {"closed": False}
    try:
        wait_services(service_timeout)
        if not auth_refused():
            return 1
        result["apply_s"] = {"loan_approval": apply("loan_approval", 120)}
        result["apply_s"][SECOND_USECASE] = apply(SECOND_USECASE, 120)  # type: ignore[index]
        result.update(run_loop(config_json))
    finally:
        out.write_text(json.dumps(result))
    print(f"\n{result['summary']}", flush=True)
    return 0 if result["closed"] else 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["smoke"]:
        return smoke()
    if argv[:1] == ["run"] and len(argv) == 3:
        return run(argv[1], float(argv[2]))
    print(
        "usage: python -m aif.multihost.client {smoke | run CONFIG_JSON SERVICE_TIMEOUT_S}", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
