"""Ingestion for applications that push over gRPC: the same rules as the raw topics.

Each call (or each message of a stream) is one unit: accepted items are stored in the
raw dataset and published to the records topic, rejected ones to the dead-letter topic
(with every reason, as for Kafka input), in one Kafka transaction. Record ids are
``grpc:<request_id>:<index>`` unless the item carries its own, so a retried request
with the same ``request_id`` yields the same ids (downstream deduplicates by record id).

The dataset version is published before the transaction commits: a failure between
the two leaves records in the dataset that the records topic lacks, never the other
way round, and a retry stores them again under the same ids (readers keep one row
per record id).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aifactory.common.v1 import common_pb2
from aifactory.ingestion.v1 import ingestion_service_pb2
from libs.errors import InvalidArgument, Unavailable
from libs.telemetry import headers_with_context
from libs.usecase import UnknownUseCase
from services.ingestion import convert, decode
from services.ingestion.publisher import TransactionalPublisher, accepted_message, rejected_message
from services.ingestion.quality import QualityTracker, WindowState
from services.ingestion.records import Outcome, UseCaseIngestor
from services.ingestion.store import RawDataset
from services.ingestion.violations import PARSE, Violation


@dataclass(frozen=True)
class PushResult:
    outcomes: list[Outcome]
    dataset: common_pb2.DatasetRef | None


class PushIngest:
    """The gRPC data plane: validate, store, publish a batch of pushed items."""

    def __init__(
        self,
        ingestors: Mapping[str, UseCaseIngestor],
        dataset: RawDataset,
        quality: QualityTracker,
        publisher: TransactionalPublisher,
        *,
        records_topic: str,
        dead_letter_topic: str,
        max_items: int = 10_000,
        quality_state: WindowState | None = None,
    ) -> None:
        # Not a copy: the core's ingestors, which follow the use-case catalogue.
        self._ingestors = ingestors
        self._dataset = dataset
        self._quality = quality
        self._quality_state = quality_state
        self._publisher = publisher
        self._records_topic = records_topic
        self._dlq_topic = dead_letter_topic
        self.max_items = max_items

    def ingestor(self, use_case: str) -> UseCaseIngestor:
        """The ingestor of a loaded use case: ``NOT_FOUND`` for another, ``INVALID_ARGUMENT`` for none."""
        if not use_case:
            raise InvalidArgument("use_case", "is required")
        ingestor = self._ingestors.get(use_case)
        if ingestor is None:
            raise UnknownUseCase(use_case, self._ingestors)
        return ingestor

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex

    async def ingest(
        self,
        use_case: str,
        items: Sequence[ingestion_service_pb2.IngestItem],
        *,
        request_id: str,
        start_index: int = 0,
        subject: str = "anonymous",
    ) -> PushResult:
        """Decide, store and publish ``items``; one outcome per item, in order."""
        ingestor = self.ingestor(use_case)
        if not items:
            raise InvalidArgument("items", "at least one item is required")
        if len(items) > self.max_items:
            raise InvalidArgument("items", f"{len(items)} items; at most {self.max_items} per message")
        now = datetime.now(UTC)
        decided = [
            self._decide(ingestor, item, f"grpc:{request_id}:{start_index + i}", now)
            for i, item in enumerate(items)
        ]
        outcomes = [o for o, _, _ in decided]
        accepted = [o for o in outcomes if o.accepted]
        ingested_at = convert.timestamp(now)
        trace = headers_with_context()
        ref: common_pb2.DatasetRef | None = None
        async with self._dataset.lock:
            if accepted:
                files = await asyncio.to_thread(
                    self._dataset.stage, use_case, accepted, [f"grpc:{subject}"] * len(accepted), now
                )
                version = self._dataset.publish(use_case, files)
                assert version is not None
                ref = convert.dataset_ref(use_case, version.version, version.uri)
            messages = []
            for outcome, original, content_type in decided:
                if outcome.accepted:
                    assert ref is not None
                    event = convert.accepted(
                        use_case,
                        outcome,
                        schema_version=ingestor.schema_version,
                        dataset=ref,
                        ingested_at=ingested_at,
                    )
                    messages.append(accepted_message(self._records_topic, event, trace))
                else:
                    event = convert.rejected(
                        use_case,
                        outcome,
                        original=original,
                        content_type=content_type,
                        schema_version=ingestor.schema_version,
                        rejected_at=ingested_at,
                        privacy=ingestor.privacy,
                    )
                    messages.append(
                        rejected_message(self._dlq_topic, event, key=None, group="grpc", trace=trace)
                    )
            counted = self._quality.count(use_case, outcomes)
            if self._quality_state is not None:
                messages.append(self._quality_state.message(use_case, counted.window))
            try:
                await self._publisher.commit(messages)
            except Exception as exc:  # noqa: BLE001 - aborted: nothing was published; the caller may retry
                raise Unavailable(
                    f"could not publish the batch ({type(exc).__name__}: {exc}); retry with the "
                    "same request_id"
                ) from exc
            self._quality.apply([counted])
        if ref is None:
            current = self._dataset.current(use_case)
            ref = convert.dataset_ref(use_case, current.version, current.uri) if current else None
        return PushResult(outcomes, ref)

    @staticmethod
    def _decide(
        ingestor: UseCaseIngestor, item: ingestion_service_pb2.IngestItem, default_id: str, now: datetime
    ) -> tuple[Outcome, bytes, str]:
        which = item.WhichOneof("payload")
        if which == "json":
            payload = item.json.encode("utf-8")
            return ingestor.from_bytes(payload, decode.JSON, default_id, now), payload, decode.JSON
        if which == "record":
            return (
                ingestor.from_record(item.record, default_id, now),
                item.record.SerializeToString(),
                decode.PROTOBUF,
            )
        return (
            Outcome(default_id, [Violation("", PARSE, "item has neither json nor record")]),
            b"",
            decode.JSON,
        )
