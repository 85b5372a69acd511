"""``make demo``: the closed loop on a fresh factory, end to end.

Starts its own Kafka and Triton and the seven services as separate processes on the
embedded defaults, then drives the shipped loan-approval use case as its users
would (aif.loop.driver): history with outcomes, a first model, serving by entity
id with feedback, a concept drift, and the factory's own recovery. Prints a
timeline, a quality table, the lineage of one prediction and the audit trail; the
last line is a one-line summary; exits non-zero when the loop did not close.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from google.protobuf import symbol_database

from aif.loop import LoopConfig, LoopDriver, LoopResult, report
from aif.loop.factory import fresh_factory
from aif.stack import RunningService, Stack
from libs.rpc.client import ClientTls, blocking_channel

ROOT = Path(__file__).resolve().parents[2]


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


def _metrics_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _refused(
    svc: RunningService, metadata: tuple[tuple[str, str], ...], tls: ClientTls | None = None
) -> grpc.StatusCode | None:
    """The status of a call to the service's first method (empty request), or None if it answered."""
    full_name = importlib.import_module(f"services.{svc.name}.app").SERVICE_NAME
    method = symbol_database.Default().pool.FindServiceByName(full_name).methods[0]
    path = f"/{full_name}/{method.name}"
    with blocking_channel(svc.target, tls) as channel:
        try:
            if method.client_streaming:
                channel.stream_unary(path)(iter([b""]), metadata=metadata, timeout=5)
            else:
                channel.unary_unary(path)(b"", metadata=metadata, timeout=5)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return None


def _auth_enforced(stack: Stack) -> bool:
    """Every service refuses a call without a token, and a signed token that lacks the role.

    Neither call reaches a servicer, so the check has no side effect.
    """
    no_role = stack.metadata("demo-no-role", {"*": []})
    tls = stack.client_tls()
    enforced = [
        svc.name
        for svc in stack.running.values()
        if _refused(svc, (), tls) == grpc.StatusCode.UNAUTHENTICATED
        and _refused(svc, no_role, tls) == grpc.StatusCode.PERMISSION_DENIED
    ]
    _step(
        f"auth on in {len(enforced)}/{len(stack.running)} services: no token -> UNAUTHENTICATED, "
        "token without the role -> PERMISSION_DENIED (tokens: aif token issue)"
    )
    return len(enforced) == len(stack.running)


DEMO_ROOT = ROOT / "build" / "demo"
# The demo's own broker, Triton and service ports, so it runs beside tests and `make infra-up`.
DEMO_KAFKA_PORT, DEMO_TRITON_PORT, DEMO_SERVICE_OFFSET = 29092, 28000, 12000


def _health_table(stack: Stack) -> bool:
    print(f"\n  {'service':<13} {'pid':>7} {'gRPC':>6} {'health':>8} {'metrics':>8}")
    healthy = True
    for svc in stack.running.values():
        metrics = _metrics_ok(svc.metrics_port)
        healthy &= metrics
        print(
            f"  {svc.name:<13} {svc.process.pid:>7} {svc.grpc_port:>6} {'SERVING':>8} "
            f"{'ok' if metrics else 'DOWN':>8}"
        )
    print()
    return healthy


def run(config: LoopConfig | None = None) -> int:
    """The factory's main job, end to end; non-zero when the loop did not close."""
    # Outcomes come back as an app reports them: each after a wall delay drawn up to the
    # spec's max_delay (capped at LoopConfig.wall_delay_cap_s), some all but at once.
    config = config or LoopConfig(outcome_delay="wall")
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so everything started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    _step("starting a fresh factory: Kafka 3.9.1 (KRaft), Triton (explicit model control), 7 services")
    with fresh_factory(
        DEMO_ROOT,
        kafka_port=DEMO_KAFKA_PORT,
        triton_port=DEMO_TRITON_PORT,
        service_offset=DEMO_SERVICE_OFFSET,
        say=print,
        restart_exited=True,
    ) as factory:
        ok = _health_table(factory.stack) & _auth_enforced(factory.stack)
        driver = LoopDriver(
            factory.kafka.bootstrap_servers,
            factory.targets(),
            factory.stack.metadata("demo-operator"),
            config,
            say=lambda m: print(m, flush=True),
            tls=factory.stack.client_tls("demo-operator"),
        )

        async def drive() -> LoopResult:
            async with driver:
                return await driver.run()

        result = asyncio.run(drive())
        _step("stopping everything it started")
    print()
    print(report.timeline(result))
    print()
    print(report.quality_table(result))
    print()
    print(report.lineage(result.lineage))
    print()
    print(report.audit_trail(result))
    print(f"\n(demo ran {time.monotonic() - started:.0f}s; state and logs in {DEMO_ROOT})")
    print(report.summary(result))
    return 0 if ok and result.closed else 1
