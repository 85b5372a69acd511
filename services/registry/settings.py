"""Settings of the registry service (environment variables AIF_REGISTRY_*)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from libs.bus import topics
from libs.sandbox import SandboxSettings
from libs.settings import ClientSettings, ConsumerSettings, DatabaseSettings, UseCaseSourceSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT / "build" / "registry"


class RegistrySettings(
    UseCaseSourceSettings, DatabaseSettings, ConsumerSettings, ClientSettings, SandboxSettings
):
    """``database_url`` (empty: ``sqlite:///build/registry/registry.db``; or
    ``postgresql+psycopg://...``), ``usecases_topic`` (where the catalogue this registry
    owns is published), ``consume``, ``consumer_group`` (``registry``) and
    ``dead_letter_topic`` come from the libs.settings mixins."""

    service: ClassVar[str] = "registry"

    grpc_port: int = Field(default=50055, ge=0, le=65535)
    metrics_port: int = Field(default=9105, ge=0, le=65535)

    # Content-addressed artifacts (models, reference statistics, the serving bundles'
    # files), served to the other services over gRPC (the registry is the artifact server):
    # "files" keeps them under artifact_root (one host); "database" in the registry's
    # database, in chunks: what several replicas on one PostgreSQL share.
    artifact_store: Literal["files", "database"] = "files"
    artifact_root: Path = DEFAULT_DIR / "artifacts"
    artifact_chunk_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20)
    # ExportModelVersion writes here, nowhere else (never into Triton's model repository:
    # the gateway loads versions into Triton through its API with GetServingBundle).
    export_root: Path = DEFAULT_DIR / "exports"
    # Instance group of a serving bundle's config when the caller asks for none, and of an
    # export's config.pbtxt (both variants are always exported).
    triton_instance_kind: Literal["cpu", "gpu"] = "cpu"
    triton_max_batch_size: int = Field(default=256, ge=1, le=65536)
    triton_max_queue_delay_us: int = Field(default=0, ge=0, le=1_000_000)
    triton_cpu_threads: int = Field(default=1, ge=0, le=256)
    # Load each registered artifact and run it once to check the I/O contract.
    validate_artifacts: bool = True
    # PostgreSQL: the role that owns the tables and runs the migrations, when database_url's
    # role is only the runtime role (store/roles.py grants it INSERT/SELECT on the audit log).
    database_owner_url: str = ""
    # Signed checkpoints of the audit chain (services/registry/checkpoints.py): the Ed25519
    # key (created when missing; its public key beside it, "<key>.pub"), the append-only
    # topic they go to (one registry database per topic), and how often the head is
    # checked. 0: no checkpoints (the default, as several registries share a development
    # broker); set it, e.g. to 5, in any deployment.
    audit_checkpoint_key: Path = DEFAULT_DIR / "audit-checkpoint.key"
    audit_checkpoint_topic: str = topics.AUDIT_CHECKPOINTS
    audit_checkpoint_seconds: float = Field(default=0.0, ge=0, le=3600)
    max_artifact_bytes: int = Field(default=512 * 1024 * 1024, ge=1)

    # Events: consumed (unless consume is false) and published.
    evaluated_topic: str = topics.MODEL_EVALUATED
    rollback_topic: str = topics.ROLLBACK_REQUESTED
    predictions_topic: str = topics.PREDICTIONS
    promoted_topic: str = topics.MODEL_PROMOTED
    prediction_batch: int = Field(default=1000, ge=1, le=100_000)

    # The owners a lifecycle event is confirmed with before the registry acts on it
    # (called with ``service_token``): the evaluator for a verdict, the monitor for a
    # rollback request. Empty: that topic is not consumed (verdicts still arrive by
    # RecordEvaluation; rollbacks by the Rollback RPC).
    evaluator_target: str = "127.0.0.1:50054"
    monitor_target: str = "127.0.0.1:50057"
    # An event's time is capped at now + this wherever it is stored or compared.
    event_skew_s: float = Field(default=30.0, ge=0, le=3600)
