"""What ingestion's two transports share: per use case rules, the raw dataset, the quality windows.

The Kafka pipeline (:mod:`services.ingestion.consumers`) and the gRPC API
(:mod:`services.ingestion.push`) both run a payload through one use case's
:class:`~services.ingestion.records.UseCaseIngestor`, store accepted records in the
:class:`~services.ingestion.store.RawDataset` and count them in the quality windows.
The use cases are the catalogue's (:mod:`libs.usecase.follower`): one applied while the
service runs is taken up (:meth:`Core.take_up`), a retired one dropped (:meth:`Core.drop`;
its dataset stays readable).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from opentelemetry.metrics import Meter

from libs.errors import ConfigError
from libs.usecase import UseCase, UseCases
from services.ingestion.pii import NO_KEY
from services.ingestion.quality import QualityTracker
from services.ingestion.records import UseCaseIngestor
from services.ingestion.settings import IngestionSettings
from services.ingestion.store import RawDataset

log = logging.getLogger(__name__)


def salt_of(settings: IngestionSettings) -> bytes:
    """The privacy key; none configured stops the service at start (no default key)."""
    salt = settings.privacy_salt.get_secret_value().encode()
    if not salt:
        raise ConfigError(NO_KEY)
    return salt


@dataclass
class Core:
    """What both transports share: per use case rules, the raw dataset, the quality windows."""

    ingestors: dict[str, UseCaseIngestor]
    dataset: RawDataset
    quality: QualityTracker
    salt: bytes
    max_payload_bytes: int = 256 * 1024

    async def take_up(self, uc: UseCase) -> UseCaseIngestor:
        """Ingest ``uc`` (new, or a new version): its rules, dataset and quality windows."""
        ingestor = UseCaseIngestor(uc, salt=self.salt, max_payload_bytes=self.max_payload_bytes)
        async with self.dataset.lock:
            self.dataset.take_up(uc, ingestor.privacy)
        self.quality.track(uc.name, uc)
        self.ingestors[uc.name] = ingestor
        return ingestor

    def drop(self, name: str) -> None:
        """Stop taking records of ``name`` (retired); its dataset stays readable."""
        self.ingestors.pop(name, None)


def make_core(settings: IngestionSettings, meter: Meter, usecases: UseCases) -> Core:
    """The core over the use cases known at start (the catalogue's)."""
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
    return Core(ingestors, dataset, quality, salt, settings.max_payload_bytes)
