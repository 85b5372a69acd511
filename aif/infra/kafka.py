"""Kafka 3.9 in KRaft mode (one node: broker + controller), run from Maven jars."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._component import Component, Handle
from ._proc import ASYNC_THREAD, InfraError, NotReady, port_open, run_async, run_quiet
from .config import DEPLOY_DIR, InfraConfig

POM = DEPLOY_DIR / "kafka" / "pom.xml"
TEMPLATE = DEPLOY_DIR / "kafka" / "server.properties"
LOG4J = DEPLOY_DIR / "kafka" / "log4j.properties"
# Small heap: the box has 2 cores and runs everything else beside Kafka.
JVM_OPTS = [
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]
WARMUP_TOPIC = "aif-infra-warmup"
WARMUP_GROUP = "aif-infra-warmup"


def libs_dir(config: InfraConfig) -> Path:
    return config.tools("kafka") / "libs"


def install(config: InfraConfig) -> bool:
    """Fetches the Kafka jars with Maven when missing; True when it fetched them."""
    libs = libs_dir(config)
    if any(libs.glob("kafka_2.13-*.jar")):
        return False
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("kafka", "mvn not found (apt-get install maven)")
    libs.mkdir(parents=True, exist_ok=True)
    run_quiet(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        "kafka",
        config.dir("kafka") / "install.log",
    )
    return True


def new_cluster_id() -> str:
    """16 random bytes, url-safe base64 without padding, as kafka-storage random-uuid."""
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):  # a leading '-' reads as a command-line option
            return cid


class Kafka(Component):
    """The open local broker (PLAINTEXT). :class:`~aif.infra.kafka_secure.KafkaSecure`
    reuses it with another template, extra format arguments and client security."""

    name = "kafka"
    default_timeout = 90.0  # cold JVM start plus group coordinator warm-up on 2 cores
    template = TEMPLATE

    @property
    def port(self) -> int:
        return self.config.kafka_port

    @property
    def other_ports(self) -> list[int]:
        return [self.config.kafka_controller_port]

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def _java(self) -> list[str]:
        java = shutil.which("java") or (
            os.path.join(os.environ["JAVA_HOME"], "bin", "java") if "JAVA_HOME" in os.environ else None
        )
        if java is None:
            raise InfraError("kafka", "java not found (apt-get install openjdk-17-jre-headless)")
        libs = libs_dir(self.config)
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise InfraError("kafka", f"no jars in {libs}: run `python -m aif.infra install`")
        return [java, *JVM_OPTS, "-cp", f"{libs}/*", f"-Dlog4j.configuration=file:{LOG4J}"]

    def _properties_values(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "HOST": cfg.host,
            "PORT": self.port,
            "CONTROLLER_PORT": self.other_ports[0],
            "LOG_DIRS": self.data_dir,
        }

    def _format_args(self) -> list[str]:
        """Extra ``kafka-storage format`` arguments (the secure profile adds SCRAM users)."""
        return []

    def client_security(self) -> dict[str, Any]:
        """aiokafka keyword arguments a client needs to talk to this broker as admin."""
        return {}

    def _write_properties(self) -> Path:
        text = string.Template(self.template.read_text()).substitute(self._properties_values())
        path = self.dir / "server.properties"
        path.write_text(text)
        return path

    def spawn(self) -> int:
        java = self._java()
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self._write_properties()
        if not (self.data_dir / "meta.properties").exists():
            # KRaft storage is formatted once; later starts keep topics and offsets.
            argv = [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(props),
                "--ignore-formatted",
            ]
            extra = self._format_args()
            # Extra arguments may hold passwords: the log shows how many, not what.
            shown = [*argv, f"<{len(extra)} more arguments>"] if extra else None
            run_quiet([*argv, *extra], self.name, self.daemon.log_file, shown=shown)
        return self.daemon.spawn([*java, "kafka.Kafka", str(props)], cwd=self.dir)

    def probe(self) -> None:
        if not port_open(self.config.host, self.port):
            raise NotReady(f"nothing listens on {self.endpoint()} yet")
        _quiet_aiokafka()
        run_async(lambda: _probe(self.endpoint(), self.client_security()))


class _NotFromProbe(logging.Filter):
    """Drops aiokafka's retry warnings logged by the readiness probe's thread only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != ASYNC_THREAD


def _quiet_aiokafka() -> None:
    """Expected while Kafka boots ("coordinator not available"...): keep them off stderr.

    A logger's filters see only its own records, so each aiokafka logger gets one.
    """
    import aiokafka  # noqa: F401 - registers its loggers

    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("aiokafka"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _NotFromProbe) for f in logger.filters):
                logger.addFilter(_NotFromProbe())


async def _probe(bootstrap: str, security: dict[str, Any] | None = None) -> None:
    """Ready = metadata lists a broker, the group coordinator answers and the use-case
    catalogue's topic exists, compacted (created before any service or tool writes to it:
    auto-created, it would be deleted after the broker's retention)."""
    from libs.bus.admin import CREATED, PRESENT, ensure_catalogue_topic

    await metadata_ready(bootstrap, security)
    await warm_up(bootstrap, security)
    if not security and await ensure_catalogue_topic(bootstrap) not in (CREATED, PRESENT):
        raise NotReady("the use-case catalogue topic could not be created")


async def metadata_ready(bootstrap: str, security: dict[str, Any] | None = None) -> None:
    """NotReady until the broker answers a metadata request listing itself."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **(security or {}))
    try:
        await client.bootstrap()
        if not client.cluster.brokers():
            raise NotReady("metadata lists no broker")
    except (KafkaError, OSError) as exc:
        raise NotReady(f"metadata: {exc!r}") from exc
    finally:
        await client.close()


async def warm_up(bootstrap: str, security: dict[str, Any] | None = None) -> None:
    """The coordinator warm-up (an offset commit for one group) creates and loads
    __consumer_offsets, so the first real consumer group does not wait for it."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10000, **(security or {}))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=WARMUP_GROUP,
        enable_auto_commit=False,
        request_timeout_ms=10000,
        **(security or {}),
    )

    async def warm() -> None:
        await producer.start()
        await producer.send_and_wait(WARMUP_TOPIC, b"warmup", partition=0)
        await consumer.start()
        tp = TopicPartition(WARMUP_TOPIC, 0)
        consumer.assign([tp])
        await consumer.commit({tp: 0})

    try:
        # aiokafka retries a missing coordinator forever: bound each attempt.
        await asyncio.wait_for(warm(), 30)
    except (TimeoutError, KafkaError, OSError) as exc:
        raise NotReady(f"group coordinator: {exc!r}") from exc
    finally:
        await consumer.stop()
        await producer.stop()


@dataclass(kw_only=True)
class KafkaHandle(Handle):
    """A reachable Kafka broker; pass ``bootstrap_servers`` to clients."""

    bootstrap_servers: str


def ensure_kafka(config: InfraConfig | None = None, timeout: float | None = None) -> KafkaHandle:
    """Reuses the broker on the Kafka port or starts one; waits until usable."""
    comp = Kafka(config or InfraConfig.from_env())
    started = comp.ensure(timeout)
    return KafkaHandle(
        started=started, log_file=comp.daemon.log_file, component=comp, bootstrap_servers=comp.endpoint()
    )
