"""Settings of the ingestion service (environment variables AIF_INGESTION_*)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from libs.bus import topics
from libs.settings import ConsumerSettings, UseCaseSourceSettings

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "build" / "data" / "raw"


class IngestionSettings(UseCaseSourceSettings, ConsumerSettings):
    """``usecases_topic`` (the catalogue it follows: a use case applied while it runs is
    ingested at once), ``consume`` (off: gRPC only), ``consumer_group`` (unset: "ingestion")
    and ``dead_letter_topic`` come from the shared mixins."""

    service: ClassVar[str] = "ingestion"

    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9101, ge=0, le=65535)

    # Root of the versioned raw dataset: <data_dir>/<use_case>/date=YYYY-MM-DD/*.parquet.
    data_dir: Path = DEFAULT_DATA_DIR
    # Stable per instance (a pod name): the Kafka transactional id is
    # "<consumer_group>-<instance id>" and the consumer's static group instance id is the
    # instance id, so a restarted instance fences its dead self and takes its partitions
    # back at once. Two live instances must never share it. Empty: "<host name>-<gRPC port>",
    # stable across restarts and distinct for two instances on one host.
    instance_id: str = Field(default="", max_length=200)
    # Raw topic of a use case; {use_case} is replaced by its name (tests use their own).
    raw_topic_pattern: str = "aif.{use_case}.raw"
    records_topic: str = topics.RECORDS
    quality_topic: str = topics.QUALITY
    # Compacted topic of this service's own open quality windows (one key per instance and
    # use case), written in the transactions that count them: resumed after a restart.
    quality_state_topic: str = "aif.ingestion.quality-state"
    # Partitions of the topics above when ingestion has to create them (at start, if missing).
    topic_partitions: int = Field(default=3, ge=1, le=10_000)
    topic_replication: int = Field(default=1, ge=1, le=10)
    # Payloads above this many bytes are dead-lettered unparsed (code too_large); the dead
    # letter keeps the first 256 KiB of such a payload (RecordRejected.original_truncated).
    max_payload_bytes: int = Field(default=256 * 1024, ge=256, le=16 * 1024 * 1024)
    # Accepted records of one partition sent together in one RecordAcceptedBatch message, at
    # most this many (1: one RecordAccepted per message, for consumers that want that form).
    records_per_message: int = Field(default=100, ge=1, le=10_000)
    # Records per poll, and so per transaction and per dataset file.
    max_batch: int = Field(default=2000, ge=1, le=100_000)
    # The raw-topic pipeline is declared stuck, and the process exits to be restarted
    # (resuming from its last commit), when raw records wait and the group's committed
    # offsets have not moved for this long while no batch is being retried (an await that
    # never returns, a consumer that stopped fetching). 0: never.
    stall_timeout_s: float = Field(default=60.0, ge=0, le=3600)
    # Items per gRPC message.
    max_request_items: int = Field(default=10_000, ge=1, le=1_000_000)
    # A quality window closes after this long, or after this many records (0: time only).
    quality_window_seconds: float = Field(default=10.0, gt=0, le=86_400)
    quality_window_records: int = Field(default=0, ge=0)

    @field_validator("raw_topic_pattern")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{use_case}" not in value or value.replace("{use_case}", "x").count("{"):
            raise ValueError("must contain {use_case} and no other placeholder")
        return value

    def raw_topic(self, use_case: str) -> str:
        return self.raw_topic_pattern.replace("{use_case}", use_case)

    @property
    def instance(self) -> str:
        return self.instance_id or f"{socket.gethostname()}-{self.grpc_port}"

    @property
    def transactional_id(self) -> str:
        return f"{self.consumer_group}-{self.instance}"
