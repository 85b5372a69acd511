"""What may change in an onboarded use case, and what would need a new model.

A use case's champion was trained on its record schema, features and label: a spec
that changes those no longer describes the model that serves it. Everything around
the model (how it is gated, monitored, retrained and deployed) may change at any time,
and the services apply it live. The registry refuses the rest with
:class:`IncompatibleChange`, naming the field:

=================================================  ==========================================
applied live, no new model                         needs a new model (refused)
=================================================  ==========================================
``description``, ``owners``                        ``task``
``evaluation`` (metric, floor, regression margin,  ``entity``, ``event_time.field``
holdout, calibration, ``fairness.max_gap``)        ``label`` (field, arrival, classes)
``drift`` (thresholds, windows, hysteresis)        ``fields``: a field added or removed, its
``retraining`` (debounce, cooldown, budget)        type, enum, ``required`` or ``pii``
``deployment`` (promotion, strategy, canary)       ``features`` (rows, aggregates, ttl)
``model`` and ``training`` (the next training      ``evaluation.fairness.attribute`` (a
uses them; the champion keeps serving)             stored column of the offline features)
``label.max_delay``, ``event_time.max_future_skew``
``fields.<f>``: description, min, max, max_length
=================================================  ==========================================

A change that needs a new model is a new use case (another name; retire the old one
when the new one serves). A spec's ``version`` must grow with every change; applying
the same version with the same spec again changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from libs.errors import FailedPrecondition, InvalidArgument
from libs.usecase.model import UseCase

# Keys of a record field that only decide which records are accepted.
_FIELD_LIVE = frozenset({"description", "min", "max", "max_length"})

_WHY = {
    "task": "the model's task",
    "entity": "the entity the model scores",
    "event_time": "the event time training sets are cut on",
    "label": "the label the model predicts",
    "fields": "the record schema (stored datasets and model inputs)",
    "features": "the model's inputs",
    "evaluation": "the offline feature columns (the fairness attribute is stored with each row)",
}


def needs_new_model(path: str) -> bool:
    """Whether a difference at dotted key ``path`` makes the served model stale."""
    parts = path.split(".")
    head = parts[0]
    if head in ("task", "entity", "features"):
        return True
    if head == "label":
        return path != "label.max_delay"
    if head == "event_time":
        return path != "event_time.max_future_skew"
    if head == "fields":
        return not (len(parts) == 3 and parts[2] in _FIELD_LIVE)
    return path == "evaluation.fairness" or path.startswith("evaluation.fairness.attribute")


@dataclass(frozen=True)
class FieldChange:
    """One difference between two versions of a spec."""

    field: str
    needs_new_model: bool


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Plan:
    """What applying a spec over the current one does."""

    outcome: Outcome
    changes: tuple[FieldChange, ...] = ()


class IncompatibleChange(FailedPrecondition):
    """A new version of a spec changes what the served model was trained on.

    ``field`` is the first such key; ``fields`` all of them. gRPC: FAILED_PRECONDITION.
    """

    def __init__(self, use_case: str, fields: list[str]) -> None:
        head = fields[0].split(".")[0]
        why = _WHY.get(head, "what the model was trained on")
        others = f" (also: {', '.join(fields[1:])})" if len(fields) > 1 else ""
        super().__init__(
            f"{fields[0]}: changes {why} of use case {use_case!r}{others}; that needs a new "
            "model: onboard the spec as a new use case (another name) and retire this one "
            "once the new one serves"
        )
        self.use_case, self.field, self.fields = use_case, fields[0], tuple(fields)


def _plain(spec: UseCase) -> dict[str, Any]:
    data = spec.model_dump(mode="json")
    data.pop("version", None)
    return data


def diff(old: UseCase, new: UseCase) -> list[FieldChange]:
    """Every key that differs (lists and added or removed sections as a whole), in order."""
    out: list[FieldChange] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in [*a, *(k for k in b if k not in a)]:
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        elif a != b:
            out.append(FieldChange(path, needs_new_model(path)))

    walk(_plain(old), _plain(new), "")
    return out


def plan(current: UseCase | None, new: UseCase) -> Plan:
    """What applying ``new`` over ``current`` (None: a new use case) does.

    Raises :class:`~libs.errors.InvalidArgument` on ``version`` when it does not grow, and
    :class:`IncompatibleChange` when a change needs a new model.
    """
    if current is None:
        return Plan(Outcome.CREATED)
    if current.name != new.name:
        raise InvalidArgument("name", f"{new.name!r} is not {current.name!r}")
    changes = diff(current, new)
    if new.version == current.version:
        if not changes:
            return Plan(Outcome.UNCHANGED)
        raise InvalidArgument(
            "version",
            f"version {new.version} of {new.name!r} is applied already with another spec: "
            f"give the new spec version {current.version + 1}",
        )
    if new.version < current.version:
        raise InvalidArgument(
            "version", f"{new.version} is older than the applied version {current.version} of {new.name!r}"
        )
    stale = [c.field for c in changes if c.needs_new_model]
    if stale:
        raise IncompatibleChange(new.name, stale)
    return Plan(Outcome.UPDATED, tuple(changes))


__all__ = ["FieldChange", "IncompatibleChange", "Outcome", "Plan", "diff", "needs_new_model", "plan"]
