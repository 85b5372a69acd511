"""Ports and paths of the local infrastructure, in one place, overridable by env vars."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class InfraConfig:
    """Where each component listens and keeps its files.

    Build one with :meth:`from_env`; use :func:`dataclasses.replace` for a variant
    (a test that needs other ports should also give it its own ``infra_dir``).
    """

    infra_dir: Path
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    # The secure profile (SASL/SCRAM + ACLs) beside the open broker.
    kafka_secure_port: int = 9094
    kafka_secure_controller_port: int = 9095
    pg_port: int = 5432
    redis_port: int = 6379
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    triton_model_repo: Path | None = None  # None: <infra_dir>/triton/model_repository
    # Model control behind the install's key (aif.infra.triton). Off only for the
    # benchmark's private Triton: perf_analyzer cannot send gRPC headers.
    triton_restricted: bool = True
    # Where `install` puts what is installed once (Kafka jars, Triton's python backend);
    # None: infra_dir. A throwaway infra_dir (demo, tests) shares the installed ones.
    tools_dir: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InfraConfig:
        """Defaults overridden by ``AIF_*`` variables (see the package docstring)."""
        env = os.environ if env is None else env
        infra_dir = Path(env.get("AIF_INFRA_DIR") or REPO_ROOT / "build" / "infra").resolve()
        repo = env.get("AIF_TRITON_MODEL_REPO")
        return cls(
            infra_dir=infra_dir,
            host=env.get("AIF_INFRA_HOST") or "127.0.0.1",
            kafka_port=_int(env, "AIF_KAFKA_PORT", 9092),
            kafka_controller_port=_int(env, "AIF_KAFKA_CONTROLLER_PORT", 9093),
            kafka_secure_port=_int(env, "AIF_KAFKA_SECURE_PORT", 9094),
            kafka_secure_controller_port=_int(env, "AIF_KAFKA_SECURE_CONTROLLER_PORT", 9095),
            pg_port=_int(env, "AIF_PG_PORT", 5432),
            redis_port=_int(env, "AIF_REDIS_PORT", 6379),
            triton_http_port=_int(env, "AIF_TRITON_HTTP_PORT", 8000),
            triton_grpc_port=_int(env, "AIF_TRITON_GRPC_PORT", 8001),
            triton_metrics_port=_int(env, "AIF_TRITON_METRICS_PORT", 8002),
            triton_model_repo=Path(repo).resolve() if repo else None,
        )

    def dir(self, component: str) -> Path:
        """The working folder of one component (pid file, logs, data)."""
        return self.infra_dir / component

    def tools(self, component: str) -> Path:
        """The folder of what ``install`` installed for one component."""
        return (self.tools_dir or self.infra_dir) / component

    @property
    def model_repository(self) -> Path:
        return self.triton_model_repo or self.dir("triton") / "model_repository"
