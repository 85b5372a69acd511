"""Local real infrastructure: Kafka, PostgreSQL, Redis and Triton as plain processes.

No Docker: Kafka 3.9 runs from Maven jars (KRaft, one node), PostgreSQL and Redis from
Debian packages, Triton from the ``tritonserver`` binary in the nvidia-pytriton wheel.
Each runs as a background daemon (own session) with its pid file, log and data under
``build/infra/<name>/``.

Command line::

    python -m aif.infra install                 # apt packages, Kafka jars, Triton backend
    python -m aif.infra up [kafka postgres redis triton]   # default: these four
    python -m aif.infra up kafka-secure         # the secure Kafka profile (SASL_SSL: TLS + SCRAM, ACLs)
    python -m aif.infra kafka-acls [--follow]   # its producers and ACLs for the live catalogue
    python -m aif.infra status
    python -m aif.infra down [...]              # stops only what aif.infra started

Python API (pytest fixtures, demo)::

    from aif.infra import ensure_kafka, ensure_postgres, ensure_redis, ensure_triton

    kafka = ensure_kafka()          # KafkaHandle(bootstrap_servers="127.0.0.1:9092", started=...)
    secure = ensure_kafka_secure()  # KafkaSecureHandle(bootstrap_servers="127.0.0.1:9094", ...);
                                    # secure.security("trainer") -> aiokafka SASL_SSL keyword arguments
    pg = ensure_postgres()          # PostgresHandle(dsn="postgresql://aifactory:aifactory@127.0.0.1:5432/aifactory")
    rd = ensure_redis()             # RedisHandle(url="redis://127.0.0.1:6379/0")
    tr = ensure_triton()            # TritonHandle(grpc_url="127.0.0.1:8001", http_url="127.0.0.1:8000",
                                    #              metrics_url=..., model_repository=Path(...))
    ...
    kafka.stop()                    # stops it only if this ensure_* call started it

Every ``ensure_*(config: InfraConfig | None = None, timeout: float | None = None)``
reuses whatever already answers on the component's port (waiting until it is usable),
else starts a daemon and waits for readiness; ``handle.started`` tells which. Readiness:
Kafka metadata lists the broker and the group coordinator has answered an offset commit;
PostgreSQL accepts the DSN (role and database ``aifactory`` are created on first start);
Redis answers PING; Triton is live and ready over gRPC. Failures raise
:class:`InfraError`, naming the component and its log file, with the log's tail.

Outage tests: ``handle.stop_server()`` / ``start_server()`` / ``restart_server()`` stop
and start an aif.infra-managed instance even if the handle reused it (SIGTERM, or
SIGINT for PostgreSQL; SIGKILL to the process group after the timeout).
``TritonHandle.load_model(name)`` loads ``deploy/triton/models/<name>`` through Triton's
API (config and files in the load call), leaving Triton's repository folder untouched.

Environment (defaults in brackets), read by :meth:`InfraConfig.from_env`:
``AIF_INFRA_DIR`` [<repo>/build/infra], ``AIF_INFRA_HOST`` [127.0.0.1],
``AIF_KAFKA_PORT`` [9092], ``AIF_KAFKA_CONTROLLER_PORT`` [9093], ``AIF_KAFKA_SECURE_PORT``
[9094], ``AIF_KAFKA_SECURE_CONTROLLER_PORT`` [9095], ``AIF_KAFKA_SECURE_USE_CASES`` [the shipped use cases],
``AIF_PG_PORT`` [5432],
``AIF_REDIS_PORT`` [6379], ``AIF_TRITON_HTTP_PORT`` [8000], ``AIF_TRITON_GRPC_PORT``
[8001], ``AIF_TRITON_METRICS_PORT`` [8002], ``AIF_TRITON_MODEL_REPO``
[<infra dir>/triton/model_repository].
"""

from __future__ import annotations

from ._component import Component, Handle
from ._proc import InfraError
from .config import InfraConfig
from .kafka import Kafka, KafkaHandle, ensure_kafka
from .kafka_secure import KafkaSecure, KafkaSecureHandle, ensure_kafka_secure
from .postgres import Postgres, PostgresHandle, ensure_postgres
from .redis import Redis, RedisHandle, ensure_redis
from .triton import Triton, TritonHandle, ensure_triton

COMPONENTS: dict[str, type[Component]] = {
    "kafka": Kafka,
    "postgres": Postgres,
    "redis": Redis,
    "triton": Triton,
    "kafka-secure": KafkaSecure,
}
# What `up` and `install` mean without names; the secure profile only when asked for.
DEFAULT_COMPONENTS = ("kafka", "postgres", "redis", "triton")

__all__ = [
    "COMPONENTS",
    "Component",
    "Handle",
    "InfraConfig",
    "DEFAULT_COMPONENTS",
    "InfraError",
    "KafkaHandle",
    "KafkaSecureHandle",
    "PostgresHandle",
    "RedisHandle",
    "TritonHandle",
    "ensure_kafka",
    "ensure_kafka_secure",
    "ensure_postgres",
    "ensure_redis",
    "ensure_triton",
]
