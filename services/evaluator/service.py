"""The evaluator's core: score a candidate and the champion on the holdout, apply the gates.

On ``ModelTrained`` (:meth:`EvaluatorCore.handle_event`): the holdout is the newest
``uc.evaluation.holdout`` of labelled data, starting no earlier than the end of the
candidate's training window, so the candidate never sees it. Candidate and champion are
scored on the same rows. The report is stored here, recorded in the registry (which acts
on it by policy) and published as ``ModelEvaluated``.

Idempotent by model version: a replayed ``ModelTrained`` finds the stored report and
only records and publishes it again (same report id, same event id), so a crash between
the steps loses nothing and a duplicate changes nothing.

``Evaluate`` (on demand) stores its report but neither records it in the registry nor
publishes it: a what-if on any window must not promote a model.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import pandas as pd
from google.protobuf.message import Message

from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import evaluator_service_pb2 as pb
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.trainer.v1 import events_pb2 as trainer_events
from libs.bus import Event, topics
from libs.errors import FailedPrecondition, InvalidArgument
from libs.lifecycle import artifact
from libs.lifecycle.data import TrainingData, time_range_proto, timestamp
from libs.lifecycle.frames import (
    Window,
    canonical_order,
    check_columns,
    encode_labels,
    feature_matrix,
    labelled,
    plan_windows,
    select,
)
from libs.lifecycle.registry import EvaluationRegistry, ModelKey
from libs.usecase import UseCase
from services.evaluator.gates import GateResult, evaluate_gates
from services.evaluator.metrics import MetricSet, measure
from services.evaluator.reports import ReportStore

log = logging.getLogger(__name__)

CHAMPION = "champion"
SPLIT = "holdout"


class Publisher(Protocol):
    async def publish(self, topic: str, event: Message, *, use_case: str, key: str | None = None,
                      event_id: str | None = None) -> Any: ...


@dataclass(frozen=True)
class EvaluatorOptions:
    # Fewer labelled holdout rows than this fail the holdout_size gate.
    min_holdout_rows: int = 50
    evaluated_topic: str = topics.MODEL_EVALUATED


def _metrics_proto(values: MetricSet) -> list[common_pb2.Metric]:
    out = [common_pb2.Metric(name=k, value=v, split=SPLIT) for k, v in values.values.items()]
    if values.ece is not None:
        out.append(common_pb2.Metric(name="ece", value=values.ece, split=SPLIT))
    if values.parity_gap is not None:
        out.append(common_pb2.Metric(name="demographic_parity_difference", value=values.parity_gap, split=SPLIT))
    out.append(common_pb2.Metric(name="rows", value=float(values.rows), split=SPLIT))
    # One entry per name: ece may also be among the standard metrics.
    seen: dict[str, common_pb2.Metric] = {}
    for metric in out:
        seen.setdefault(metric.name, metric)
    return list(seen.values())


def _gate_proto(g: GateResult) -> evaluator_events.GateResult:
    return evaluator_events.GateResult(gate=g.gate, metric=g.metric, value=g.value, threshold=g.threshold,
                                       passed=g.passed, comparator=g.comparator, message=g.message)


def _frame_hash(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def report_id_of(model: ModelKey, champion: ModelKey | None, window: Window, data_hash: str) -> str:
    """Same candidate, champion, window and data → the same report id."""
    key = f"{model}|{champion or '-'}|{window.start.isoformat()}|{window.end.isoformat()}|{data_hash}"
    return "eval-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class EvaluatorCore:
    def __init__(self, *, usecases: Mapping[str, UseCase], data: TrainingData, registry: EvaluationRegistry,
                 store: ReportStore, publisher: Publisher, options: EvaluatorOptions | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._usecases = dict(usecases)
        self._data = data
        self._registry = registry
        self._store = store
        self._publisher = publisher
        self._options = options or EvaluatorOptions()
        self._clock = clock

    def _usecase(self, name: str) -> UseCase:
        uc = self._usecases.get(name)
        if uc is None:
            raise InvalidArgument("model.use_case", f"unknown use case {name!r}; known: {sorted(self._usecases)}")
        return uc

    # -- events ---------------------------------------------------------------------

    async def handle_event(self, event: Event[Message]) -> None:
        if not isinstance(event.payload, trainer_events.ModelTrained):
            raise InvalidArgument("event", f"unexpected {type(event.payload).__name__}")
        await self.evaluate_trained(event.payload)

    async def evaluate_trained(self, trained: trainer_events.ModelTrained) -> pb.EvaluationReport:
        """The automatic evaluation of a newly trained version: store, record, publish."""
        model = ModelKey.from_proto(trained.model)
        if not model.use_case or not model.model_name or model.version <= 0:
            raise InvalidArgument("model", "ModelTrained names no registered version")
        trigger = f"trained:{model}"
        report = self._store.find(trigger)
        if report is None:
            not_before = trained.window.end.ToDatetime(tzinfo=UTC) if trained.window.HasField("end") else None
            report = await self.evaluate(model, not_before=not_before)
            report = self._store.save(report, trigger=trigger)
        else:
            log.info("%s already evaluated (%s); recording and publishing it again", model, report.report_id)
        evaluated = self.evaluated_event(report)
        await self._registry.record_evaluation(evaluated)
        await self._publisher.publish(self._options.evaluated_topic, evaluated, use_case=model.use_case,
                                      key=model.use_case, event_id=f"{report.report_id}.evaluated")
        log.info("%s evaluated: %s (%s)", model, "passed" if report.passed else "failed",
                 "; ".join(f"{g.gate}={'ok' if g.passed else 'FAIL'}" for g in report.gates))
        return report

    # -- on demand ------------------------------------------------------------------

    async def evaluate_on_demand(self, model: ModelKey, champion: ModelKey | None,
                                 window: Window | None) -> pb.EvaluationReport:
        report = await self.evaluate(model, champion=champion, window=window, resolve_champion=champion is None)
        return self._store.save(report)

    def get_report(self, report_id: str) -> pb.EvaluationReport:
        return self._store.get(report_id)

    # -- the evaluation -------------------------------------------------------------

    async def evaluate(self, model: ModelKey, *, champion: ModelKey | None = None, window: Window | None = None,
                       not_before: datetime | None = None, resolve_champion: bool = True) -> pb.EvaluationReport:
        """Score ``model`` (and the champion) on ``window`` (default: the holdout) and gate it."""
        uc = self._usecase(model.use_case)
        training_set = await self._data.get_training_set(uc.name, window)
        if window is None:
            window = plan_windows(training_set.frame, uc).holdout
            if not_before is not None and not_before > window.start:
                window = Window(not_before, max(not_before, window.end))
        check_columns(training_set.frame, uc)
        frame = canonical_order(labelled(select(training_set.frame, window)))
        if champion is None and resolve_champion:
            champion = await self._registry.get_alias(uc.name, model.model_name, CHAMPION)
        data_hash = training_set.content_hash or _frame_hash(frame)
        report_id = report_id_of(model, champion, window, data_hash)

        candidate_module = self._load(await self._registry.get_artifact(model), uc, str(model))
        champion_module, champion_note = None, ""
        if champion is not None:
            try:
                champion_module = self._load(await self._registry.get_artifact(champion), uc, str(champion))
            except FailedPrecondition as exc:  # trained under another input contract: not comparable
                champion_note = exc.message
                log.warning("champion %s not comparable: %s", champion, exc.message)

        matrix = feature_matrix(frame, uc)
        y_true = encode_labels(frame["label"], uc)
        attribute = uc.evaluation.fairness.attribute if uc.evaluation.fairness else None
        groups = frame[attribute].tolist() if attribute and attribute in frame.columns else None
        candidate_out = await asyncio.to_thread(artifact.predict, candidate_module, matrix)
        candidate = measure(uc, y_true, candidate_out, groups)
        champion_metrics = None
        if champion_module is not None:
            champion_out = await asyncio.to_thread(artifact.predict, champion_module, matrix)
            champion_metrics = measure(uc, y_true, champion_out, groups)
        verdict = evaluate_gates(uc, candidate, champion_metrics, min_rows=self._options.min_holdout_rows)
        gates = [_gate_proto(g) for g in verdict.gates]
        if champion_note:
            gates.append(evaluator_events.GateResult(gate="champion", passed=True,
                                                     message=f"skipped: champion {champion} {champion_note}"))
        report = pb.EvaluationReport(
            report_id=report_id, model=model.to_proto(), passed=verdict.passed, gates=gates,
            candidate_metrics=_metrics_proto(candidate),
            champion_metrics=_metrics_proto(champion_metrics) if champion_metrics else [],
            dataset=common_pb2.DatasetRef(use_case=uc.name, version=data_hash, uri=training_set.uri),
            window=time_range_proto(window), created_at=timestamp(self._clock()),
            slices={k: pb.SliceMetrics(metrics=[common_pb2.Metric(name=n, value=v, split=SPLIT)
                                                for n, v in s.values.items()], sample_size=s.rows)
                    for k, s in candidate.slices.items()})
        if champion is not None and champion_module is not None:
            report.champion.CopyFrom(champion.to_proto())
        return report

    @staticmethod
    def _load(data: bytes, uc: UseCase, what: str) -> Any:
        """Load an artifact, checking it takes this use case's inputs (``FailedPrecondition`` if not)."""
        meta = artifact.metadata(data)
        inputs = meta.get("inputs")
        if inputs is not None and list(inputs) != uc.model_inputs():
            raise FailedPrecondition(f"{what} takes inputs {inputs}, the spec has {uc.model_inputs()}")
        return artifact.load(data)

    @staticmethod
    def evaluated_event(report: pb.EvaluationReport) -> evaluator_events.ModelEvaluated:
        event = evaluator_events.ModelEvaluated(
            report_id=report.report_id, model=report.model, passed=report.passed, gates=report.gates,
            metrics=report.candidate_metrics, dataset=report.dataset, evaluated_at=report.created_at)
        if report.HasField("champion"):
            event.champion.CopyFrom(report.champion)
        return event
