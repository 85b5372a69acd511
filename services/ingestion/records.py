"""One use case's ingestion rules on one payload: decode → check → mask → outcome.

Shared by the Kafka pipeline and the gRPC API (one data plane, two transports), and
never raises: whatever the payload, the result is an :class:`Outcome`, accepted or
rejected with every reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aifactory.common.v1 import common_pb2
from libs.usecase import UseCase
from services.ingestion import decode
from services.ingestion.pii import Privacy
from services.ingestion.validate import Checked, Contract
from services.ingestion.violations import INTERNAL, Malformed, Violation

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ingestion decided about one payload."""

    record_id: str
    violations: list[Violation]
    # Set when accepted: masked, typed values of every kept field.
    values: dict[str, Any] = field(default_factory=dict)
    entity_id: str = ""
    event_time: datetime | None = None
    # Declared fields that were missing or null; None when the payload was malformed.
    nulls: list[str] | None = None

    @property
    def accepted(self) -> bool:
        return not self.violations


class UseCaseIngestor:
    """Decodes, validates and masks the records of one use case."""

    def __init__(self, usecase: UseCase, *, salt: bytes, max_payload_bytes: int) -> None:
        self.usecase = usecase
        self.schema_version = f"{usecase.name}@{usecase.version}"
        self.contract = Contract(usecase)
        self.privacy = Privacy(usecase, salt)
        self._max = max_payload_bytes

    def from_bytes(self, payload: bytes, content_type: str, default_id: str, now: datetime) -> Outcome:
        """A payload as it arrived on the raw topic or in a gRPC ``json`` item."""
        try:
            if content_type == decode.PROTOBUF:
                candidate = decode.decode_protobuf(
                    payload,
                    self.usecase.name,
                    self.usecase.entity.field,
                    self.usecase.event_time.field,
                    self._max,
                )
            else:
                candidate = decode.decode_json(payload, self._max)
        except Malformed as exc:
            return Outcome(default_id, [exc.violation])
        except Exception as exc:  # noqa: BLE001 - a decoder bug must cost one record, not the consumer
            return self._failed(exc, default_id)
        return self._check(candidate, default_id, now)

    def from_record(self, record: common_pb2.Record, default_id: str, now: datetime) -> Outcome:
        """A structured record from the gRPC API."""
        try:
            candidate = decode.record_to_candidate(
                record, self.usecase.name, self.usecase.entity.field, self.usecase.event_time.field
            )
        except Malformed as exc:
            return Outcome(record.record_id or default_id, [exc.violation])
        except Exception as exc:  # noqa: BLE001 - as in from_bytes
            return self._failed(exc, default_id)
        return self._check(candidate, default_id, now)

    def _failed(self, exc: Exception, default_id: str) -> Outcome:
        log.exception("decoding a %s record failed", self.usecase.name, exc_info=exc)
        return Outcome(default_id, [Violation("", INTERNAL, f"ingestion failed: {type(exc).__name__}")])

    def _check(self, candidate: decode.Candidate, default_id: str, now: datetime) -> Outcome:
        try:
            checked: Checked = self.contract.check(candidate.values, now, candidate.record_id)
            record_id = checked.record_id or default_id
            if not checked.accepted:
                return Outcome(record_id, checked.violations, nulls=checked.nulls)
            values = self.privacy.mask(checked.values)
            entity_id = checked.entity_id or ""
            if self.usecase.fields[self.usecase.entity.field].pii == "hash":
                entity_id = str(values[self.usecase.entity.field])
            return Outcome(record_id, [], values, entity_id, checked.event_time, checked.nulls)
        except Exception as exc:  # noqa: BLE001 - a bug must cost one record, not the consumer
            log.exception("checking a %s record failed", self.usecase.name)
            return Outcome(default_id, [Violation("", INTERNAL, f"ingestion failed: {type(exc).__name__}")])
