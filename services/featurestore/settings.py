"""Settings of the featurestore service (environment variables AIF_FEATURESTORE_*)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from libs.bus import topics
from libs.settings import UseCaseSourceSettings

_BUILD = Path(__file__).resolve().parents[2] / "build"


class FeatureStoreSettings(UseCaseSourceSettings):
    """Use cases from the catalogue (``usecases_topic``), followed live. Records and
    feedback are consumed by faust (its own consumer group, ``app_id``), not by
    :class:`libs.bus.EventConsumer`: hence no ``ConsumerSettings`` and a
    ``dead_letter_topic`` of its own."""

    service: ClassVar[str] = "featurestore"

    grpc_port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9102, ge=0, le=65535)

    # The Feast repository generated from the specs (feature_store.yaml, definitions, registry).
    feast_repo: Path = _BUILD / "feast"
    # Feast project; entity keys in a shared Redis are scoped by it.
    feast_project: str = Field(default="aifactory", pattern=r"^[a-z][a-z0-9_]{0,62}$")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    # Run Feast's online writes in a child process (another core) or in this one.
    online_writer: Literal["process", "thread"] = "process"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Offline feature rows, labels and training sets (parquet), and faust's local data.
    data_dir: Path = _BUILD / "featurestore"

    records_topic: str = topics.RECORDS
    feedback_topic: str = topics.FEEDBACK
    dead_letter_topic: str = topics.DEAD_LETTER
    # FeaturesWritten events after each micro-batch; empty: none.
    features_written_topic: str = topics.FEATURES_WRITTEN
    # Run the stream processor (faust) in this process; off: serve reads only.
    stream_enabled: bool = True
    # faust app id: the consumer group and the prefix of its changelog/repartition topics.
    app_id: str = Field(default="aif-featurestore", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    # Partitions of the state table's changelog (and of topics it creates). Equal to the
    # records topic's (ingestion's AIF_INGESTION_TOPIC_PARTITIONS), records are consumed as
    # they are; otherwise they are first repartitioned by entity through another topic.
    # Changing either count switches between the two: let the stream catch up first, or
    # records forwarded to the repartition topic and not yet applied are left there.
    partitions: int = Field(default=3, ge=1, le=256)
    # Micro-batch: at most batch_max records (a take of RecordAcceptedBatch messages is cut at
    # message boundaries to about that many), or what arrived within batch_within_ms. While
    # a batch is being written the next one fills up, so batches grow with the load: an
    # entity seen several times in one batch is written online once (its newest row).
    batch_max: int = Field(default=4000, ge=1, le=100_000)
    batch_within_ms: int = Field(default=50, ge=1, le=60_000)
    # faust's producer (repartition forwards, changelogs) waits this long to batch sends:
    # a few ms here saves a produce request per message.
    producer_linger_ms: int = Field(default=5, ge=0, le=1000)
    # Kafka consumer session: how long a killed worker's partitions wait before reassignment.
    session_timeout_s: float = Field(default=10.0, ge=6, le=300)
    # How often processed offsets are committed (faust's broker_commit_interval).
    commit_interval_s: float = Field(default=1.0, gt=0, le=60)
    # Small offline files of a use case merged into one once there are this many.
    compact_files: int = Field(default=32, ge=2, le=10_000)
    # The stream is declared stuck, and the process exits to be restarted (resuming from its
    # last commit), when records wait and its committed offsets have not moved for this long
    # (a crashed agent, a write that never returns, a wedged rebalance). 0: never.
    stall_timeout_s: float = Field(default=60.0, ge=0, le=3600)
    # Write attempts of one micro-batch before the process gives up (and is restarted).
    write_attempts: int = Field(default=5, ge=1, le=100)
    # A batch naming a use case this service does not know yet waits this long for the
    # catalogue to catch up (it was applied a moment ago) before being dead-lettered.
    usecase_wait_s: float = Field(default=30.0, gt=0, le=600)
