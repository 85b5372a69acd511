"""One micro-batch of the stream, without Kafka or Feast: messages in, rows and states out.

The faust agents hand each batch of messages here; what comes back is what to write
(feature rows, labels), what to dead-letter (with the reason) and the entity states to
store once the writes are durable. A message that cannot be used is caught on its own
and dead-lettered, so one bad event never stops the stream; in a ``RecordAcceptedBatch``
each record is judged on its own and a bad one is dead-lettered alone, as a
``RecordAccepted`` of its own.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aifactory.ingestion.v1 import events_pb2 as ingestion_events
from libs.bus import compression
from libs.bus import headers as h
from libs.bus.batches import member_headers
from libs.bus.partitions import partition_of
from libs.features import Duplicate, EntityState, FeatureComputer, FeatureError
from libs.usecase import UseCase, UseCases
from services.featurestore.convert import (
    RECORD_ACCEPTED,
    RECORD_BATCH,
    decode_feedback,
    decode_record,
    decode_record_batch,
    header_map,
    record_in,
)
from services.featurestore.domain import BadEvent, FeatureRow, LabelRow, RecordIn, coerce_label, state_key

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


def batch_member(item: Incoming, event: ingestion_events.RecordAccepted, index: int) -> Incoming:
    """Record ``index`` of a batch message as a message of its own (what gets dead-lettered)."""
    rec = event.record
    key = state_key(rec.use_case, rec.entity_id) if rec.use_case or rec.entity_id else None
    return Incoming(
        item.topic,
        item.partition,
        item.offset,
        key,
        event.SerializeToString(),
        member_headers(item.headers, RECORD_ACCEPTED, index),
    )


def _skipped(item: Incoming, out: BatchOutcome) -> bool:
    """Dead-letters a batch or record the consumer skipped unread (past a decompression cap,
    :mod:`libs.bus.compression`) with the cap's reason; False for any other message."""
    skipped = compression.skipped_reason(item.value, item.headers)
    if skipped is None:
        return False
    error, reason = skipped
    out.dead.append(Dead(item, reason, error))
    return True


class RecordProcessor:
    def __init__(
        self, usecases: Mapping[str, UseCase], *, require_key: bool = False, partitions: int | None = None
    ) -> None:
        self.usecases = UseCases(usecases)
        # The stream relies on the message key for placement (partition = hash of the key):
        # a record without its entity's key may sit in a partition whose state is elsewhere.
        self.require_key = require_key
        # Partitions of the records topic when records are consumed where ingestion placed
        # them (no repartition): a batched record (no message key) must hash to its batch's.
        self.partitions = partitions
        self.computers = {name: FeatureComputer(uc) for name, uc in usecases.items()}

    def take_up(self, uc: UseCase) -> None:
        """Compute the features of ``uc`` (applied while running) from now on."""
        self.computers[uc.name] = FeatureComputer(uc)
        self.usecases[uc.name] = uc

    def drop(self, name: str) -> None:
        """A retired use case: its records and outcomes are dead-lettered from now on."""
        self.usecases.pop(name, None)

    def records(self, items: Sequence[Incoming], load: StateLoader) -> BatchOutcome:
        """Apply a batch of RecordAccepted (and RecordAcceptedBatch) messages to their entities' states."""
        out = BatchOutcome()
        for item in items:
            if _skipped(item, out):
                continue
            headers = header_map(item.headers)
            if headers.get(h.EVENT_TYPE) == RECORD_BATCH:
                self._batch(item, load, out)
                continue
            self._guarded(item, out, self._record, item, headers, load, out)
        return out

    @staticmethod
    def _guarded(
        item: Incoming | Callable[[], Incoming], out: BatchOutcome, apply: Callable[..., None], *args: Any
    ) -> None:
        """``apply(*args)``; a failure dead-letters ``item`` (built only then, when a callable) with its reason."""
        try:
            apply(*args)
            return
        except BadEvent as exc:
            reason, code = exc.reason, exc.code
        except FeatureError as exc:
            reason, code = str(exc), "feature"
        except Exception as exc:  # noqa: BLE001 - one bad event must not stop the stream
            log.exception("a record failed")
            reason, code = str(exc) or type(exc).__name__, type(exc).__name__
        out.dead.append(Dead(item() if callable(item) else item, reason, code))

    def _batch(self, item: Incoming, load: StateLoader, out: BatchOutcome) -> None:
        try:
            batch = decode_record_batch(item.value)
        except BadEvent as exc:
            out.dead.append(Dead(item, exc.reason, exc.code))
            return
        for index, event in enumerate(batch.records):
            self._guarded(
                functools.partial(batch_member, item, event, index),
                out,
                self._batched,
                item,
                event,
                load,
                out,
            )

    def _batched(
        self, item: Incoming, event: ingestion_events.RecordAccepted, load: StateLoader, out: BatchOutcome
    ) -> None:
        rec = record_in(event, self.usecases)
        if self.partitions is not None and partition_of(rec.state_key, self.partitions) != item.partition:
            raise BadEvent(
                "partition",
                f"record of {rec.state_key!r} is batched in partition {item.partition}, "
                f"not in its own ({partition_of(rec.state_key, self.partitions)})",
            )
        self._apply(rec, load, out)

    def _record(self, item: Incoming, headers: dict[str, str], load: StateLoader, out: BatchOutcome) -> None:
        rec = decode_record(item.value, headers, self.usecases)
        key = rec.state_key
        if item.key != key and (item.key is not None or self.require_key):
            # The repartition trusted the message key; a record filed under another entity's
            # key would be applied where that entity's state is not.
            raise BadEvent("key", f"message key {item.key!r} is not the record's {key!r}")
        self._apply(rec, load, out)

    def _apply(self, rec: RecordIn, load: StateLoader, out: BatchOutcome) -> None:
        uc = self.usecases[rec.use_case]
        label = None
        if uc.label.arrives == "record" and rec.fields.get(uc.label.field) is not None:
            try:
                label = coerce_label(uc, rec.fields[uc.label.field])
            except ValueError as exc:
                raise BadEvent("label", f"{uc.label.field}: {exc}") from None
        key = rec.state_key
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
        out.rows.append(
            FeatureRow(
                uc.name,
                rec.entity_id,
                rec.event_time_us,
                rec.record_id,
                result.values,
                result.newest,
                rec.dataset_version,
                rec.dataset_uri,
                attribute,
            )
        )
        if label is not None:
            out.labels.append(
                LabelRow(uc.name, rec.entity_id, rec.event_time_us, label, rec.event_time_us, rec.record_id)
            )

    def feedback(self, items: Sequence[Incoming]) -> BatchOutcome:
        """Turn a batch of FeedbackRecorded messages into labels."""
        out = BatchOutcome()
        for item in items:
            if _skipped(item, out):
                continue
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
            out.labels.append(
                LabelRow(
                    fb.use_case, fb.entity_id, fb.event_time_us, fb.outcome, fb.observed_us, fb.record_id
                )
            )
        return out
