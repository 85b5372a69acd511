"""The evaluator's core: score a candidate and the champion on the holdout, apply the gates.

On ``ModelTrained`` (:meth:`EvaluatorCore.evaluate_trained`, called by :mod:`.consumers`):
the holdout is the newest ``uc.evaluation.holdout`` of labelled data, starting no earlier
than the end of the candidate's training window, so the candidate never sees it. Candidate and champion are
scored on the same rows, each through its own feature view: a champion trained under
another input contract gets the columns it declares, in its order, from the same rows.
When the holdout lacks one of them the champion cannot be scored, and the comparison
gate fails (a candidate is never promoted without a comparison). The report is stored here, then handed to a :class:`Publisher`
(:mod:`.publisher`), which records it in the registry (which acts on it by policy) and
publishes it as ``ModelEvaluated``. Domain types only: protobuf stays at the edge.

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
from typing import Protocol

import numpy as np
import pandas as pd

from libs.errors import FailedPrecondition, InvalidArgument
from libs.lifecycle import artifact
from libs.lifecycle.data import DatasetVersion, TrainingData
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
from libs.lifecycle.registry import EvaluationRegistry, MetricPoint, ModelKey
from libs.sandbox import Limits
from libs.usecase import UseCase, UseCases
from services.evaluator.domain import Report, SliceMetrics, TrainedVersion
from services.evaluator.gates import ALLOWANCE_CAP, evaluate_gates
from services.evaluator.scores import MetricSet, measure
from services.evaluator.store import ReportStore

log = logging.getLogger(__name__)

CHAMPION = "champion"
SPLIT = "holdout"


class Publisher(Protocol):
    """Where the verdict of an automatic evaluation goes (the registry, then ``ModelEvaluated``)."""

    async def model_evaluated(self, report: Report) -> None: ...


@dataclass(frozen=True)
class EvaluatorOptions:
    # Fewer labelled holdout rows than this fail the holdout_size gate.
    min_holdout_rows: int = 50
    # The fairness gate's sampling allowance is at most this fraction of max_gap.
    fairness_allowance_cap: float = ALLOWANCE_CAP
    # Limits of the sandboxed child that loads and scores each artifact (its code is untrusted).
    sandbox: Limits = Limits()


def _report_metrics(values: MetricSet) -> tuple[MetricPoint, ...]:
    out = [MetricPoint(k, v, SPLIT) for k, v in values.values.items()]
    if values.ece is not None:
        out.append(MetricPoint("ece", values.ece, SPLIT))
    if values.parity_gap is not None:
        out.append(MetricPoint("demographic_parity_difference", values.parity_gap, SPLIT))
    out.append(MetricPoint("rows", float(values.rows), SPLIT))
    # One entry per name: ece may also be among the standard metrics.
    seen: dict[str, MetricPoint] = {}
    for metric in out:
        seen.setdefault(metric.name, metric)
    return tuple(seen.values())


def _frame_hash(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def report_id_of(model: ModelKey, champion: ModelKey | None, window: Window, data_hash: str) -> str:
    """Same candidate, champion, window and data → the same report id."""
    key = f"{model}|{champion or '-'}|{window.start.isoformat()}|{window.end.isoformat()}|{data_hash}"
    return "eval-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class EvaluatorCore:
    def __init__(
        self,
        *,
        usecases: Mapping[str, UseCase],
        data: TrainingData,
        registry: EvaluationRegistry,
        store: ReportStore,
        publisher: Publisher,
        options: EvaluatorOptions | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # The catalogue's live set: a use case applied while running is known at once.
        self._usecases = UseCases.view(usecases)
        self._data = data
        self._registry = registry
        self._store = store
        self._publisher = publisher
        self._options = options or EvaluatorOptions()
        self._clock = clock

    def _usecase(self, name: str) -> UseCase:
        return self._usecases.require(name, field="model.use_case")

    # -- newly trained versions -----------------------------------------------------

    async def evaluate_trained(self, trained: TrainedVersion) -> Report:
        """The automatic evaluation of a newly trained version: store, record, publish."""
        model = trained.model
        if not model.use_case or not model.model_name or model.version <= 0:
            raise InvalidArgument("model", "ModelTrained names no registered version")
        trigger = f"trained:{model}"
        report = self._store.find(trigger)
        if report is None:
            report = await self.evaluate(model, not_before=trained.trained_until)
            report = self._store.save(report, trigger=trigger)
        else:
            log.info("%s already evaluated (%s); recording and publishing it again", model, report.report_id)
        await self._publisher.model_evaluated(report)
        log.info(
            "%s evaluated: %s (%s)",
            model,
            "passed" if report.passed else "failed",
            "; ".join(f"{g.gate}={'ok' if g.passed else 'FAIL'}" for g in report.gates),
        )
        return report

    # -- on demand ------------------------------------------------------------------

    async def evaluate_on_demand(
        self, model: ModelKey, champion: ModelKey | None, window: Window | None
    ) -> Report:
        report = await self.evaluate(
            model, champion=champion, window=window, resolve_champion=champion is None
        )
        return self._store.save(report)

    def get_report(self, report_id: str) -> Report:
        return self._store.get(report_id)

    # -- the evaluation -------------------------------------------------------------

    async def evaluate(
        self,
        model: ModelKey,
        *,
        champion: ModelKey | None = None,
        window: Window | None = None,
        not_before: datetime | None = None,
        resolve_champion: bool = True,
    ) -> Report:
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
        matrix = feature_matrix(frame, uc)
        champion_module, champion_matrix, not_comparable = None, matrix, ""
        if champion is not None:
            try:
                champion_module, champion_matrix = self._champion_view(
                    await self._registry.get_artifact(champion), uc, frame, matrix, str(champion)
                )
            except FailedPrecondition as exc:  # its inputs are not on the holdout
                not_comparable = exc.message
                log.warning("champion %s not comparable: %s", champion, exc.message)

        y_true = encode_labels(frame["label"], uc)
        attribute = uc.evaluation.fairness.attribute if uc.evaluation.fairness else None
        groups = frame[attribute].tolist() if attribute and attribute in frame.columns else None
        limits = self._options.sandbox
        candidate_out = await asyncio.to_thread(artifact.predict_isolated, candidate_module, matrix, limits)
        candidate = measure(uc, y_true, candidate_out, groups)
        champion_metrics = None
        if champion_module is not None:
            champion_out = await asyncio.to_thread(
                artifact.predict_isolated, champion_module, champion_matrix, limits
            )
            champion_metrics = measure(uc, y_true, champion_out, groups)
        verdict = evaluate_gates(
            uc,
            candidate,
            champion_metrics,
            min_rows=self._options.min_holdout_rows,
            not_comparable=not_comparable,
            allowance_cap=self._options.fairness_allowance_cap,
        )
        return Report(
            report_id=report_id,
            model=model,
            passed=verdict.passed,
            gates=tuple(verdict.gates),
            candidate_metrics=_report_metrics(candidate),
            dataset=DatasetVersion(uc.name, data_hash, training_set.uri),
            window=window,
            created_at=self._clock(),
            champion=champion if champion_module is not None else None,
            champion_metrics=_report_metrics(champion_metrics) if champion_metrics else (),
            slices={
                k: SliceMetrics(tuple(MetricPoint(n, v, SPLIT) for n, v in s.values.items()), s.rows)
                for k, s in candidate.slices.items()
            },
        )

    @staticmethod
    def _champion_view(
        data: bytes, uc: UseCase, frame: pd.DataFrame, matrix: np.ndarray, what: str
    ) -> tuple[bytes, np.ndarray]:
        """The champion and its own feature matrix on the holdout's rows.

        Its declared inputs, in its order, from the same rows the candidate is scored on;
        ``FailedPrecondition`` naming the missing columns when the holdout lacks any.
        """
        inputs = artifact.metadata(data).get("inputs")
        if inputs is None or list(inputs) == uc.model_inputs():
            return data, matrix
        missing = [c for c in inputs if c not in frame.columns]
        if missing:
            raise FailedPrecondition(
                f"{what} takes inputs {list(inputs)}; the holdout lacks {missing} (spec inputs: {uc.model_inputs()})"
            )
        try:
            own = frame[list(inputs)].to_numpy(dtype=np.float64).astype(np.float32)
        except (ValueError, TypeError) as exc:
            raise FailedPrecondition(f"{what}'s inputs are not numeric on the holdout: {exc}") from None
        return data, own

    @staticmethod
    def _load(data: bytes, uc: UseCase, what: str) -> bytes:
        """An artifact, checked to take this use case's inputs (``FailedPrecondition`` if not).
        Only read here: it is loaded and run in a sandbox (``artifact.predict_isolated``)."""
        meta = artifact.metadata(data)
        inputs = meta.get("inputs")
        if inputs is not None and list(inputs) != uc.model_inputs():
            raise FailedPrecondition(f"{what} takes inputs {inputs}, the spec has {uc.model_inputs()}")
        return data
