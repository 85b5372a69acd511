"""Starts the seven services as separate OS processes and stops them cleanly.

Used by ``make demo`` and by the tests that need real service processes. Each
service gets its own gRPC and metrics port (offset by ``port_offset`` so tests
can run beside a demo) and logs to ``<log_dir>/<service>.log``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from libs.errors import Unavailable
from libs.rpc.healthcheck import check

# name → (default gRPC port, default metrics port); the settings classes hold the
# same defaults, this table only lets the supervisor avoid importing every service.
SERVICES: dict[str, tuple[int, int]] = {
    "ingestion": (50051, 9101),
    "featurestore": (50052, 9102),
    "trainer": (50053, 9103),
    "evaluator": (50054, 9104),
    "registry": (50055, 9105),
    "gateway": (50056, 9106),
    "monitor": (50057, 9107),
}


@dataclass
class RunningService:
    name: str
    grpc_port: int
    metrics_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@dataclass
class Stack:
    """The seven (or a chosen subset of) services, each in its own process."""

    log_dir: Path
    port_offset: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    running: dict[str, RunningService] = field(default_factory=dict)

    def start(self, names: Iterable[str] = SERVICES, timeout: float = 60.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            grpc_port, metrics_port = (p + self.port_offset for p in SERVICES[name])
            env = {**os.environ, **self.env,
                   f"AIF_{name.upper()}_GRPC_PORT": str(grpc_port),
                   f"AIF_{name.upper()}_METRICS_PORT": str(metrics_port),
                   "PYTHONUNBUFFERED": "1"}
            log_path = self.log_dir / f"{name}.log"
            with log_path.open("ab") as log:
                proc = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            self.running[name] = RunningService(name, grpc_port, metrics_port, proc, log_path)
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = dict(self.running)
        while pending:
            for name, svc in list(pending.items()):
                if svc.process.poll() is not None:
                    raise Unavailable(f"{name} exited with {svc.process.returncode}; "
                                      f"see {svc.log_path}")
                if check(svc.target, timeout=0.5):
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise Unavailable(f"not healthy after {timeout:.0f}s: {', '.join(pending)}; "
                                  f"logs in {self.log_dir}")
            if pending:
                time.sleep(0.2)

    def stop(self, timeout: float = 15.0) -> dict[str, int]:
        """SIGTERM every service, wait for each, SIGKILL stragglers; returns exit codes."""
        for svc in self.running.values():
            if svc.process.poll() is None:
                svc.process.send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        for name, svc in self.running.items():
            try:
                codes[name] = svc.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                svc.process.kill()
                codes[name] = svc.process.wait()
        self.running.clear()
        return codes
