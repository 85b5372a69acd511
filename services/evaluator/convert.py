"""Protobuf at the edge: ``ModelTrained`` in; reports, ``EvaluationReport`` and ``ModelEvaluated`` out."""

from __future__ import annotations

from datetime import UTC

from aifactory.evaluator.v1 import evaluator_service_pb2 as pb
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.errors import InvalidArgument
from libs.lifecycle.data import time_range_proto, timestamp
from libs.lifecycle.registry import ModelKey
from services.evaluator.domain import GateResult, Report, TrainedVersion


def trained_of(event: trainer_events.ModelTrained) -> TrainedVersion:
    until = None
    if event.window.HasField("end"):
        try:
            until = event.window.end.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError) as exc:  # outside 0001..9999, or nanos out of range
            raise InvalidArgument("window.end", str(exc)) from None
    return TrainedVersion(ModelKey.from_proto(event.model), until)


def gate_pb(g: GateResult) -> evaluator_events.GateResult:
    return evaluator_events.GateResult(
        gate=g.gate,
        metric=g.metric,
        value=g.value,
        threshold=g.threshold,
        passed=g.passed,
        comparator=g.comparator,
        message=g.message,
    )


def report_pb(report: Report) -> pb.EvaluationReport:
    out = pb.EvaluationReport(
        report_id=report.report_id,
        model=report.model.to_proto(),
        passed=report.passed,
        gates=[gate_pb(g) for g in report.gates],
        candidate_metrics=[m.to_proto() for m in report.candidate_metrics],
        champion_metrics=[m.to_proto() for m in report.champion_metrics],
        dataset=report.dataset.to_proto(),
        window=time_range_proto(report.window),
        created_at=timestamp(report.created_at),
        slices={
            k: pb.SliceMetrics(metrics=[m.to_proto() for m in s.metrics], sample_size=s.rows)
            for k, s in report.slices.items()
        },
    )
    if report.champion is not None:
        out.champion.CopyFrom(report.champion.to_proto())
    return out


def evaluated_pb(report: Report) -> evaluator_events.ModelEvaluated:
    """The verdict as the registry records it and ``ModelEvaluated`` carries it."""
    event = evaluator_events.ModelEvaluated(
        report_id=report.report_id,
        model=report.model.to_proto(),
        passed=report.passed,
        gates=[gate_pb(g) for g in report.gates],
        metrics=[m.to_proto() for m in report.candidate_metrics],
        dataset=report.dataset.to_proto(),
        evaluated_at=timestamp(report.created_at),
    )
    if report.champion is not None:
        event.champion.CopyFrom(report.champion.to_proto())
    return event
