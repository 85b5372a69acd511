"""The durable form of what the monitor holds in memory: journal entries and checkpoints.

The monitor's state between reports (predictions waiting for their outcome, outcomes
waiting for their prediction, the windows in progress, the quality detector's running
statistic) lives in memory, where it is fast. It survives a crash as two things in the
monitor's database (:class:`services.monitor.store.MonitorStore`):

- a **journal**: every event the monitor applied, as the domain object it decoded,
  written in the transaction that also saves the event's effects, before the consumer
  may commit the event's offset to Kafka;
- a **checkpoint**: the whole in-memory state (:meth:`MonitorCore.checkpoint`), written
  now and then with the journal up to it deleted in the same transaction.

A restarted monitor loads the checkpoint and applies the journal after it; an event
that Kafka delivers again (its offset was not committed before the crash) is known by
its event id and skipped. This module turns domain objects into JSON documents and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.monitor.domain import (
    AliasKind,
    AliasMove,
    Evidence,
    EvidenceKind,
    Labelled,
    Outcome,
    Prediction,
    VersionKey,
)

PREDICTION = "prediction"
SHADOW = "shadow"
OUTCOME = "outcome"
ALIAS = "alias"

Doc = dict[str, Any]


@dataclass(frozen=True)
class Entry:
    """One applied event: its bus event id, what it was, and the decoded object."""

    event_id: str
    kind: str  # PREDICTION | SHADOW | OUTCOME | ALIAS
    doc: Doc


def _at(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def key_doc(key: VersionKey) -> list[Any]:
    return [key.use_case, key.model_name, key.version]


def key_of(doc: list[Any]) -> VersionKey:
    return VersionKey(str(doc[0]), str(doc[1]), int(doc[2]))


def prediction_doc(p: Prediction) -> Doc:
    return {
        "id": p.prediction_id,
        "model": key_doc(p.model),
        "at": _at(p.at),
        "features": dict(p.features),
        "score": p.score,
        "predicted": p.predicted,
        "alias": p.alias,
    }


def prediction_of(doc: Mapping[str, Any]) -> Prediction:
    return Prediction(
        doc["id"],
        key_of(doc["model"]),
        datetime.fromisoformat(doc["at"]),
        doc["features"],
        doc["score"],
        doc["predicted"],
        doc["alias"],
    )


def outcome_doc(o: Outcome) -> Doc:
    return {
        "id": o.prediction_id,
        "use_case": o.use_case,
        "value": o.value,
        "observed_at": _at(o.observed_at),
        "feedback_id": o.feedback_id,
        "event_time": _at(o.event_time),
    }


def outcome_of(doc: Mapping[str, Any]) -> Outcome:
    return Outcome(
        doc["id"],
        doc["use_case"],
        float(doc["value"]),
        datetime.fromisoformat(doc["observed_at"]),
        doc["feedback_id"],
        _when(doc["event_time"]),
    )


def labelled_doc(item: Labelled) -> Doc:
    return {"p": prediction_doc(item.prediction), "o": outcome_doc(item.outcome)}


def labelled_of(doc: Mapping[str, Any]) -> Labelled:
    return Labelled(prediction_of(doc["p"]), outcome_of(doc["o"]))


def alias_doc(move: AliasMove) -> Doc:
    return {
        "use_case": move.use_case,
        "model_name": move.model_name,
        "alias": move.alias,
        "new": move.new_version,
        "old": move.old_version,
        "kind": move.kind.value,
        "at": _at(move.at),
        "event_id": move.event_id,
    }


def alias_of(doc: Mapping[str, Any]) -> AliasMove:
    return AliasMove(
        doc["use_case"],
        doc["model_name"],
        doc["alias"],
        int(doc["new"]),
        int(doc["old"]),
        AliasKind(doc["kind"]),
        datetime.fromisoformat(doc["at"]),
        doc["event_id"],
    )


def evidence_doc(e: Evidence) -> Doc:
    return {
        "feature": e.feature,
        "statistic": e.statistic,
        "value": e.value,
        "threshold": e.threshold,
        "start": _at(e.window_start),
        "end": _at(e.window_end),
        "n": e.sample_size,
        "kind": int(e.kind),
        "drifted": e.drifted,
        "p": e.p_value,
    }


def evidence_of(doc: Mapping[str, Any]) -> Evidence:
    return Evidence(
        doc["feature"],
        doc["statistic"],
        float(doc["value"]),
        float(doc["threshold"]),
        datetime.fromisoformat(doc["start"]),
        datetime.fromisoformat(doc["end"]),
        int(doc["n"]),
        EvidenceKind(doc["kind"]),
        bool(doc["drifted"]),
        doc["p"],
    )
