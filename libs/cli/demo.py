"""The demo: real infrastructure and the seven services as separate processes.

What it shows today (the Foundation): every part starts on embedded defaults,
answers its health check and stops cleanly. The closed loop joins it as the
services gain their behaviour.
"""
from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from libs import infra
from libs.stack import SERVICES, Stack

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "build" / "demo"


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


@contextlib.contextmanager
def _infrastructure() -> Iterator[dict[str, str]]:
    handles: list[infra.Handle] = []
    try:
        for name, ensure in (("kafka", infra.ensure_kafka), ("postgres", infra.ensure_postgres),
                             ("redis", infra.ensure_redis), ("triton", infra.ensure_triton)):
            started = time.monotonic()
            handle = ensure()
            handles.append(handle)
            how = "started" if handle.started else "reused"
            _step(f"{name:<9} {how} in {time.monotonic() - started:4.1f}s  ({handle.component.endpoint()})")
        yield {"AIF_KAFKA_BOOTSTRAP": handles[0].component.endpoint()}
    finally:
        for handle in reversed(handles):
            handle.stop()


def _metrics_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def run() -> int:
    """Bring everything up, show it healthy, stop it; non-zero when any part failed."""
    _step("starting infrastructure (Kafka 3.9.1 KRaft, PostgreSQL, Redis, Triton)")
    with _infrastructure() as env:
        stack = Stack(LOG_DIR, env=env)
        _step(f"starting {len(SERVICES)} services as separate processes (logs in {LOG_DIR})")
        started = time.monotonic()
        try:
            stack.start()
            _step(f"all services SERVING after {time.monotonic() - started:.1f}s")
            print(f"\n  {'service':<13} {'pid':>7} {'gRPC':>6} {'health':>8} {'metrics':>8}")
            healthy = True
            for svc in stack.running.values():
                metrics = _metrics_ok(svc.metrics_port)
                healthy &= metrics
                print(f"  {svc.name:<13} {svc.process.pid:>7} {svc.grpc_port:>6} "
                      f"{'SERVING':>8} {'ok' if metrics else 'DOWN':>8}")
            print()
        finally:
            _step("stopping services (SIGTERM, drain)")
            codes = stack.stop()
    clean = all(code == 0 for code in codes.values())
    ok = healthy and clean
    print(f"demo: {len(codes)} services healthy={healthy} clean_stop={clean} "
          f"({', '.join(f'{n}={c}' for n, c in codes.items())})")
    return 0 if ok else 1


def up() -> int:
    """Run everything in the foreground until Ctrl-C."""
    with _infrastructure() as env:
        stack = Stack(LOG_DIR, env=env)
        stack.start()
        _step("running; Ctrl-C stops everything")
        try:
            while all(s.process.poll() is None for s in stack.running.values()):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            stack.stop()
    return 0
