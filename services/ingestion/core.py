"""What ingestion's two transports share: per use case rules, the raw dataset, the quality windows.

The Kafka pipeline (:mod:`services.ingestion.consumers`) and the gRPC API
(:mod:`services.ingestion.push`) both run a payload through one use case's
:class:`~services.ingestion.records.UseCaseIngestor`, store accepted records in the
:class:`~services.ingestion.store.RawDataset` and count them in the quality windows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.metrics import Meter

from libs.errors import ConfigError
from libs.usecase import DEFAULT_DIR, UseCaseError, UseCases, load_usecases, spec_files
from services.ingestion.pii import DEV_SALT
from services.ingestion.quality import QualityTracker
from services.ingestion.records import UseCaseIngestor
from services.ingestion.settings import IngestionSettings
from services.ingestion.store import RawDataset

log = logging.getLogger(__name__)


def load_specs(directory: Path) -> UseCases:
    """The use cases of ``directory``; none (with a warning) when it is missing or empty.

    An invalid spec stops the service at start, naming the file, key and line.
    """
    if not directory.is_dir():
        log.warning("use cases folder %s does not exist: no raw topic is consumed", directory)
        return UseCases()
    try:
        usecases = UseCases(load_usecases(spec_files(directory)))
    except UseCaseError as exc:
        raise ConfigError(f"invalid use case spec: {exc.message}") from None
    if not usecases:
        log.warning("no use case spec in %s: no raw topic is consumed", directory)
    return usecases


def salt_of(settings: IngestionSettings) -> bytes:
    secret = getattr(settings, "privacy_salt", None)
    salt = secret.get_secret_value().encode() if secret is not None else b""
    if not salt:
        log.warning(
            "no privacy salt configured (AIF_PRIVACY_SALT): personal data is hashed with the development salt"
        )
    return salt or DEV_SALT


@dataclass
class Core:
    """What both transports share: per use case rules, the raw dataset, the quality windows."""

    ingestors: dict[str, UseCaseIngestor]
    dataset: RawDataset
    quality: QualityTracker


def make_core(settings: IngestionSettings, meter: Meter) -> Core:
    usecases = load_specs(settings.usecases_dir or DEFAULT_DIR)
    salt = salt_of(settings)
    ingestors = {
        name: UseCaseIngestor(uc, salt=salt, max_payload_bytes=settings.max_payload_bytes)
        for name, uc in usecases.items()
    }
    dataset = RawDataset(settings.data_dir, usecases, {n: i.privacy for n, i in ingestors.items()})
    quality = QualityTracker(
        usecases,
        meter,
        window_seconds=settings.quality_window_seconds,
        window_records=settings.quality_window_records,
    )
    return Core(ingestors, dataset, quality)
