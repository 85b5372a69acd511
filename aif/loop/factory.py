"""A fresh factory on one machine: its own Kafka and Triton, the seven services, one state root.

Each run starts from nothing (a new broker, an empty model repository, empty
databases), so what the loop shows is what the factory did in that run alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aif import infra
from aif.stack import SERVICES, Stack, tls_from_env


@dataclass
class Factory:
    root: Path
    kafka: infra.KafkaHandle
    triton: infra.TritonHandle
    stack: Stack

    def targets(self) -> dict[str, str]:
        return {name: self.stack.target(name) for name in SERVICES}


@contextlib.contextmanager
def fresh_factory(
    root: Path,
    *,
    kafka_port: int,
    triton_port: int,
    service_offset: int,
    say: Callable[[str], None] = print,
    env: dict[str, str] | None = None,
    tls: bool | None = None,
) -> Iterator[Factory]:
    """Kafka on ``kafka_port`` (+1 controller), Triton on ``triton_port`` (HTTP; +1 gRPC, +2
    metrics), the services on their default ports + ``service_offset``; everything started
    here is stopped on exit, whatever happened. ``tls``: mutual TLS between every caller and
    service (None: as ``AIF_STACK_TLS`` says), certificates under ``<root>/pki``."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    default = infra.InfraConfig.from_env()
    config = dataclasses.replace(
        default,
        infra_dir=root / "infra",
        tools_dir=default.tools_dir or default.infra_dir,
        kafka_port=kafka_port,
        kafka_controller_port=kafka_port + 1,
        triton_http_port=triton_port,
        triton_grpc_port=triton_port + 1,
        triton_metrics_port=triton_port + 2,
        triton_model_repo=root / "model_repository",
    )
    handles: list[infra.Handle] = []
    stack: Stack | None = None
    try:
        started = time.monotonic()
        kafka = infra.ensure_kafka(config)
        handles.append(kafka)
        say(f"    kafka   {kafka.bootstrap_servers} ready in {time.monotonic() - started:.1f}s")
        started = time.monotonic()
        triton = infra.ensure_triton(config)
        handles.append(triton)
        say(
            f"    triton  {triton.grpc_url} ready in {time.monotonic() - started:.1f}s "
            "(explicit model control: the gateway loads models through its API)"
        )
        stack = Stack(
            root / "logs",
            port_offset=service_offset,
            data_root=root / "state",
            env={
                "AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
                "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
                # The gateway's alone (the stack gives AIF_GATEWAY_* to the gateway only).
                "AIF_GATEWAY_TRITON_CONTROL_KEY": triton.control_key,
                **(env or {}),
            },
            tls=tls_from_env() if tls is None else tls,
            pki_dir=root / "pki",
        )
        started = time.monotonic()
        stack.start(timeout=120)
        say(
            f"    {len(SERVICES)} services SERVING in {time.monotonic() - started:.1f}s, each its own process "
            f"(logs in {root / 'logs'})"
        )
        # The factory starts with no use case: the shipped specs are onboarded as a user's
        # would be (aif usecase apply: the registry's catalogue, followed by every service).
        started = time.monotonic()
        names = stack.apply_usecases(reason="fresh factory: the shipped specs")
        say(
            f"    use cases {', '.join(names)} applied (aif usecase apply) and taken up by every "
            f"service in {time.monotonic() - started:.1f}s"
        )
        yield Factory(root, kafka, triton, stack)
    finally:
        if stack is not None:
            stack.stop()
        for handle in reversed(handles):
            handle.stop()
