"""monitor.delay_records and monitor.false_alarms: the monitor against river's ADWIN and KSWIN.

A realistic model: the trainer's own training core (services.trainer.training.train,
the MLP of the loan-approval spec) trained on pre-drift LoanStream data, with the
reference statistics it builds. Then, per seed, a LoanStream whose concept drifts at
``DRIFT_AT`` is scored by that model and fed, as PredictionLogged + FeedbackRecorded
(outcomes 30 s later), through the monitor's core: distribution checks, windowed
quality and the CUSUM quality detector, with the spec's thresholds and hysteresis.
ADWIN and KSWIN (river's defaults) run on the same per-record errors, in the same order.

- delay: records from drift onset to the first alarm (median over the seeds);
- false alarms: alarms before the concept starts to change (``DRIFT_AT - drift_width``;
  ConceptDriftStream's transition starts that early), summed over the seeds.
An alarm inside the transition counts as a detection with delay 0. ``baseline_name`` /
``baseline_value``: the better of ADWIN and KSWIN on each figure.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from river import drift

from aifactory.gateway.v1 import events_pb2 as gateway_events
from libs.lifecycle import artifact
from services.monitor import convert
from services.monitor.core import MonitorCore
from services.trainer.recipe import TrainConfig
from services.trainer.training import train
from tests.bench.report import Figure
from tests.training_sets import loan_frame
from tests.unit.monitor import loanstream

SEEDS = (11, 12, 13, 14, 15)
N = 4500
DRIFT_AT = 3000
WIDTH = 50  # LoanStream's default drift_width
STATIONARY_END = DRIFT_AT - WIDTH


@dataclass
class Outcome:
    alarms: list[int] = field(default_factory=list)  # record indices

    @property
    def false_alarms(self) -> int:
        return sum(1 for a in self.alarms if a < STATIONARY_END)

    @property
    def delay(self) -> float:
        after = [a for a in self.alarms if a >= STATIONARY_END]
        return float(max(0, after[0] - DRIFT_AT)) if after else float(N - DRIFT_AT)


def _model() -> tuple[Callable[[pd.DataFrame], np.ndarray], dict[str, object]]:
    uc = loanstream.loan_usecase()
    result = train(loan_frame(3000, seed=7), uc, TrainConfig.from_usecase(uc), seed=7)

    def score(frame: pd.DataFrame) -> np.ndarray:
        return artifact.predict(result.module, frame.to_numpy(dtype=np.float32))[:, 1]

    return score, result.reference


def _run(
    scorer: Callable[[pd.DataFrame], np.ndarray], reference: dict[str, object], seed: int
) -> dict[str, Outcome]:
    uc = loanstream.loan_usecase()
    items = loanstream.events(scorer, n=N, seed=seed, drift_at=DRIFT_AT)
    core = MonitorCore({uc.name: uc})
    core.set_reference(loanstream.MODEL_V1, reference)
    now = datetime.now(UTC)
    outcomes = {"monitor": Outcome(), "ADWIN": Outcome(), "KSWIN": Outcome()}
    predicted: dict[str, int] = {}
    adwin, kswin = drift.ADWIN(), drift.KSWIN(seed=seed)
    for item in items:
        event = item.event
        if isinstance(event, gateway_events.PredictionLogged):
            prediction = convert.prediction_of(event, uc, now)
            predicted[prediction.prediction_id] = prediction.predicted or 0
            effects = core.on_prediction(prediction)
        else:
            outcome = convert.outcome_of(event, uc, now)
            effects = core.on_outcome(outcome)
            # The same per-record error the monitor's detector sees, in the same order.
            error = float(predicted.pop(outcome.prediction_id) != int(outcome.value))
            for name, detector in (("ADWIN", adwin), ("KSWIN", kswin)):
                detector.update(error)
                if detector.drift_detected:
                    outcomes[name].alarms.append(item.index)
        if effects.alarms:
            outcomes["monitor"].alarms += [item.index] * len(effects.alarms)
    return outcomes


def measure_monitor() -> list[Figure]:
    scorer, reference = _model()
    runs = []
    for seed in SEEDS:
        runs.append(_run(scorer, reference, seed))
        print(
            f"bench: monitor seed {seed}: "
            + ", ".join(f"{k} delay={v.delay:.0f} false={v.false_alarms}" for k, v in runs[-1].items()),
            file=sys.stderr,
            flush=True,
        )
    delay = {k: statistics.median(r[k].delay for r in runs) for k in runs[0]}
    false = {k: sum(r[k].false_alarms for r in runs) for k in runs[0]}
    best_delay = min(("ADWIN", "KSWIN"), key=lambda k: (delay[k], false[k]))
    best_false = min(("ADWIN", "KSWIN"), key=lambda k: (false[k], delay[k]))
    return [
        Figure(
            "monitor.delay_records",
            delay["monitor"],
            f"records (median of {len(SEEDS)} streams)",
            f"river.{best_delay}.delay_records",
            delay[best_delay],
        ),
        Figure(
            "monitor.false_alarms",
            false["monitor"],
            f"alarms ({len(SEEDS)} streams x {STATIONARY_END})",
            f"river.{best_false}.false_alarms",
            false[best_false],
        ),
    ]


if __name__ == "__main__":
    from tests.bench.report import render

    print(render(measure_monitor()))
