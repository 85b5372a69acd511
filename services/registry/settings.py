"""Settings of the registry service (environment variables AIF_REGISTRY_*)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from libs.bus import topics
from libs.settings import ConsumerSettings, DatabaseSettings, UseCaseSourceSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT / "build" / "registry"


# The repository `aif infra up` gives Triton by default; a Triton elsewhere: set
# AIF_REGISTRY_TRITON_MODEL_REPOSITORY (`aif up` and the test stacks do).
TRITON_REPOSITORY = REPO_ROOT / "build" / "infra" / "triton" / "model_repository"


class RegistrySettings(UseCaseSourceSettings, DatabaseSettings, ConsumerSettings):
    """``database_url`` (empty: ``sqlite:///build/registry/registry.db``; or
    ``postgresql+psycopg://...``), ``usecases_dir``, ``consume``, ``consumer_group``
    (``registry``) and ``dead_letter_topic`` come from the libs.settings mixins."""

    service: ClassVar[str] = "registry"

    grpc_port: int = Field(default=50055, ge=0, le=65535)
    metrics_port: int = Field(default=9105, ge=0, le=65535)

    # Content-addressed artifacts (models, reference statistics).
    artifact_root: Path = DEFAULT_DIR / "artifacts"
    # ExportModelVersion may write here (or into the Triton repository), nowhere else.
    export_root: Path = DEFAULT_DIR / "exports"
    # Triton model repository the registry exports versions into.
    triton_model_repository: Path = TRITON_REPOSITORY
    # Which instance group config.pbtxt holds (both variants are always written).
    triton_instance_kind: Literal["cpu", "gpu"] = "cpu"
    triton_max_batch_size: int = Field(default=256, ge=1, le=65536)
    triton_max_queue_delay_us: int = Field(default=0, ge=0, le=1_000_000)
    triton_cpu_threads: int = Field(default=1, ge=0, le=256)
    export_on_register: bool = True
    # Load each registered artifact and run it once to check the I/O contract.
    validate_artifacts: bool = True
    max_artifact_bytes: int = Field(default=512 * 1024 * 1024, ge=1)

    # Events: consumed (unless consume is false) and published.
    evaluated_topic: str = topics.MODEL_EVALUATED
    rollback_topic: str = topics.ROLLBACK_REQUESTED
    predictions_topic: str = topics.PREDICTIONS
    promoted_topic: str = topics.MODEL_PROMOTED
    prediction_batch: int = Field(default=1000, ge=1, le=100_000)
