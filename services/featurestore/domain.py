"""Domain types of the feature store: the stream's inputs, the rows it produces, why an event is refused.

No protobuf here: :mod:`services.featurestore.convert` turns Kafka events into these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from libs.usecase import UseCase


class BadEvent(Exception):
    """An event the feature store cannot use; ``code`` is machine-readable, ``reason`` goes
    into the dead letter."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def state_key(use_case: str, entity_id: str) -> bytes:
    """The entity's key in the records topic, the repartition topic and the state table."""
    return f"{use_case}/{entity_id}".encode()


@dataclass(frozen=True, slots=True)
class RecordIn:
    """An accepted record, as the stream applies it to its entity's state."""

    use_case: str
    entity_id: str
    event_time_us: int
    record_id: str
    fields: dict[str, Any]
    dataset_version: str
    dataset_uri: str

    @property
    def state_key(self) -> bytes:
        return state_key(self.use_case, self.entity_id)


@dataclass(frozen=True, slots=True)
class FeedbackIn:
    """A label observed after the fact (the gateway's feedback)."""

    use_case: str
    entity_id: str
    event_time_us: int
    record_id: str
    outcome: Any
    observed_us: int


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """The features of one record, as of its event time."""

    use_case: str
    entity_id: str
    event_time_us: int
    record_id: str
    values: list[float | None]  # in uc.model_inputs() order
    # False for a late record: stored offline, not written over a newer online value.
    newest: bool
    dataset_version: str = ""
    dataset_uri: str = ""
    # The record's value of the use case's fairness attribute, as text (None: no value).
    attribute: str | None = None


@dataclass(frozen=True, slots=True)
class LabelRow:
    """The label of one example, and when it became known."""

    use_case: str
    entity_id: str
    event_time_us: int
    label: Any
    label_time_us: int
    record_id: str

    @property
    def key(self) -> str:
        # A label is about one example: its record id, else entity and event time.
        return self.record_id or f"{self.entity_id}@{self.event_time_us}"


def coerce_label(uc: UseCase, value: Any) -> Any:
    """A label value as the spec's label field type; ``ValueError`` naming why not."""
    kind = uc.fields[uc.label.field].type
    if value is None:
        raise ValueError("label is null")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
            raise ValueError(f"label {value!r} is not an int")
        value = int(value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"label {value!r} is not a number")
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"label {value!r} is not a bool")
    elif kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"label {value!r} is not a string")
    classes = uc.label.classes
    if classes is not None and not any(str(value) == str(c) for c in classes):
        raise ValueError(f"label {value!r} is not one of the classes {classes}")
    return value
