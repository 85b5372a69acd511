"""One micro-batch of the stream, without Kafka or Feast: messages in, rows and states out.

The faust agents hand each batch of messages here; what comes back is what to write
(feature rows, labels), what to dead-letter (with the reason) and the entity states to
store once the writes are durable. A message that cannot be used is caught on its own
and dead-lettered, so one bad event never stops the stream.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from libs.features import Duplicate, EntityState, FeatureComputer, FeatureError
from libs.usecase import UseCase
from services.featurestore.events import (
    BadEvent,
    coerce_label,
    decode_feedback,
    decode_record,
    header_map,
)
from services.featurestore.rows import FeatureRow, LabelRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One Kafka message, shaped like aiokafka's ``ConsumerRecord`` (for :class:`DeadLetters`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Dead:
    item: Incoming
    reason: str
    error: str


@dataclass
class BatchOutcome:
    rows: list[FeatureRow] = field(default_factory=list)
    labels: list[LabelRow] = field(default_factory=list)
    dead: list[Dead] = field(default_factory=list)
    # Entity states changed by the batch, by state key: store them after the writes.
    states: dict[bytes, EntityState] = field(default_factory=dict)
    duplicates: int = 0
    # Feedback for a use case whose label arrives in the record: not ours to store.
    skipped: int = 0
    # Sequence number the stream gives the batch (orders its in-flight states).
    seq: int = 0


StateLoader = Callable[[bytes], Mapping[str, Any] | None]


class RecordProcessor:
    def __init__(self, usecases: Mapping[str, UseCase], *, require_key: bool = False) -> None:
        self.usecases = dict(usecases)
        # The stream relies on the message key for placement (partition = hash of the key):
        # a record without its entity's key may sit in a partition whose state is elsewhere.
        self.require_key = require_key
        self.computers = {name: FeatureComputer(uc) for name, uc in usecases.items()}

    def records(self, items: Sequence[Incoming], load: StateLoader) -> BatchOutcome:
        """Apply a batch of RecordAccepted messages to their entities' states."""
        out = BatchOutcome()
        for item in items:
            try:
                self._record(item, load, out)
            except BadEvent as exc:
                out.dead.append(Dead(item, exc.reason, exc.code))
            except FeatureError as exc:
                out.dead.append(Dead(item, str(exc), "feature"))
            except Exception as exc:  # noqa: BLE001 - one bad event must not stop the stream
                log.exception("record at %s/%d/%d failed", item.topic, item.partition, item.offset)
                out.dead.append(Dead(item, str(exc) or type(exc).__name__, type(exc).__name__))
        return out

    def _record(self, item: Incoming, load: StateLoader, out: BatchOutcome) -> None:
        rec = decode_record(item.value, header_map(item.headers), self.usecases)
        uc = self.usecases[rec.use_case]
        label = None
        if uc.label.arrives == "record" and rec.fields.get(uc.label.field) is not None:
            try:
                label = coerce_label(uc, rec.fields[uc.label.field])
            except ValueError as exc:
                raise BadEvent("label", f"{uc.label.field}: {exc}") from None
        key = rec.state_key
        if item.key != key and (item.key is not None or self.require_key):
            # The repartition trusted the message key; a record filed under another entity's
            # key would be applied where that entity's state is not.
            raise BadEvent("key", f"message key {item.key!r} is not the record's {key!r}")
        state = out.states.get(key)
        if state is None:
            state = EntityState.from_json(dict(load(key) or {}))
        result = self.computers[uc.name].apply(state, rec.fields, rec.event_time_us, rec.record_id)
        if isinstance(result, Duplicate):
            out.duplicates += 1
            return
        out.states[key] = state
        attribute = None
        if uc.evaluation.fairness is not None:
            raw = rec.fields.get(uc.evaluation.fairness.attribute)
            attribute = None if raw is None else str(raw)
        out.rows.append(FeatureRow(uc.name, rec.entity_id, rec.event_time_us, rec.record_id, result.values,
                                   result.newest, rec.dataset_version, rec.dataset_uri, attribute))
        if label is not None:
            out.labels.append(LabelRow(uc.name, rec.entity_id, rec.event_time_us, label,
                                       rec.event_time_us, rec.record_id))

    def feedback(self, items: Sequence[Incoming]) -> BatchOutcome:
        """Turn a batch of FeedbackRecorded messages into labels."""
        out = BatchOutcome()
        for item in items:
            try:
                fb = decode_feedback(item.value, header_map(item.headers), self.usecases)
            except BadEvent as exc:
                out.dead.append(Dead(item, exc.reason, exc.code))
                continue
            except Exception as exc:  # noqa: BLE001 - one bad event must not stop the stream
                out.dead.append(Dead(item, str(exc) or type(exc).__name__, type(exc).__name__))
                continue
            if self.usecases[fb.use_case].label.arrives != "feedback":
                out.skipped += 1
                continue
            out.labels.append(LabelRow(fb.use_case, fb.entity_id, fb.event_time_us, fb.outcome,
                                       fb.observed_us, fb.record_id))
        return out
