"""Evaluation reports as JSON documents instead of ``EvaluationReport`` protobuf bytes.

The evaluator's store works with domain reports and no longer reads protobuf, so each
stored report is rewritten once, here, into the document layout ``store.report_json``
writes (non-finite floats as strings, times as ISO 8601 UTC to the microsecond). The
conversion is spelled out in this file rather than imported, so the migration keeps
doing what it did when the store's code moves on.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import evaluator_service_pb2 as pb

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLE = sa.table(
    "evaluation_reports",
    sa.column("report_id", sa.String()),
    sa.column("report", sa.LargeBinary()),
    sa.column("document", sa.JSON()),
)


def _num(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _time(stamp: Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=UTC).isoformat()


def _stamp(text: str) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(datetime.fromisoformat(text))
    return out


def _key(ref: common_pb2.ModelRef) -> dict[str, Any]:
    return {"use_case": ref.use_case, "model_name": ref.model_name, "version": ref.version}


def _metrics(items: Any) -> list[dict[str, Any]]:
    return [{"name": m.name, "value": _num(m.value), "split": m.split, "step": m.step} for m in items]


def _pb_metrics(items: list[dict[str, Any]]) -> list[common_pb2.Metric]:
    return [
        common_pb2.Metric(name=m["name"], value=float(m["value"]), split=m["split"], step=m["step"])
        for m in items
    ]


def _document(msg: pb.EvaluationReport) -> dict[str, Any]:
    return {
        "report_id": msg.report_id,
        "model": _key(msg.model),
        "passed": msg.passed,
        "gates": [
            {
                "gate": g.gate,
                "metric": g.metric,
                "value": _num(g.value),
                "threshold": _num(g.threshold),
                "passed": g.passed,
                "comparator": g.comparator,
                "message": g.message,
            }
            for g in msg.gates
        ],
        "candidate_metrics": _metrics(msg.candidate_metrics),
        "dataset": {"use_case": msg.dataset.use_case, "version": msg.dataset.version, "uri": msg.dataset.uri},
        "window": {"start": _time(msg.window.start), "end": _time(msg.window.end)},
        "created_at": _time(msg.created_at),
        "champion": _key(msg.champion) if msg.HasField("champion") else None,
        "champion_metrics": _metrics(msg.champion_metrics),
        "slices": {k: {"metrics": _metrics(s.metrics), "rows": s.sample_size} for k, s in msg.slices.items()},
    }


def _message(doc: dict[str, Any]) -> pb.EvaluationReport:
    msg = pb.EvaluationReport(
        report_id=doc["report_id"],
        model=common_pb2.ModelRef(**doc["model"]),
        passed=doc["passed"],
        candidate_metrics=_pb_metrics(doc["candidate_metrics"]),
        champion_metrics=_pb_metrics(doc["champion_metrics"]),
        dataset=common_pb2.DatasetRef(**doc["dataset"]),
        window=common_pb2.TimeRange(start=_stamp(doc["window"]["start"]), end=_stamp(doc["window"]["end"])),
        created_at=_stamp(doc["created_at"]),
        slices={
            k: pb.SliceMetrics(metrics=_pb_metrics(s["metrics"]), sample_size=s["rows"])
            for k, s in doc["slices"].items()
        },
    )
    for g in doc["gates"]:
        msg.gates.add(
            gate=g["gate"],
            metric=g["metric"],
            value=float(g["value"]),
            threshold=float(g["threshold"]),
            passed=g["passed"],
            comparator=g["comparator"],
            message=g["message"],
        )
    if doc["champion"] is not None:
        msg.champion.CopyFrom(common_pb2.ModelRef(**doc["champion"]))
    return msg


def upgrade() -> None:
    op.add_column("evaluation_reports", sa.Column("document", sa.JSON(), nullable=True))
    bind = op.get_bind()
    for report_id, blob in bind.execute(sa.select(_TABLE.c.report_id, _TABLE.c.report)).all():
        bind.execute(
            _TABLE.update()
            .where(_TABLE.c.report_id == report_id)
            .values(document=_document(pb.EvaluationReport.FromString(blob)))
        )
    with op.batch_alter_table("evaluation_reports") as batch:
        batch.alter_column("document", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("report")


def downgrade() -> None:
    op.add_column("evaluation_reports", sa.Column("report", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    for report_id, doc in bind.execute(sa.select(_TABLE.c.report_id, _TABLE.c.document)).all():
        bind.execute(
            _TABLE.update()
            .where(_TABLE.c.report_id == report_id)
            .values(report=_message(doc).SerializeToString())
        )
    with op.batch_alter_table("evaluation_reports") as batch:
        batch.alter_column("report", existing_type=sa.LargeBinary(), nullable=False)
        batch.drop_column("document")
