"""The closed loop on a fresh factory (what `make demo` runs): drift onset → new champion serving.

- ``loop.seconds``: drift onset → the new champion answering, reported only when the loop
  closed (v2 serving, drift detected, no false alarm, quality recovered, audit valid);
  otherwise the row is marked failed. Baseline: the time the same factory took, in the
  same run, to take its first model from "train" to "serving" (training, evaluation,
  promotion, Triton load): the least a retraining can cost.
- ``loop.detection_records``: served records from the drift onset to the monitor's first
  drift report. Baseline: river's ADWIN run in this bench on the same served stream (the
  errors of the answers the app got, in the order it got them, up to the new champion),
  records from the onset to its first alarm. A detector that never fires is reported as a
  miss (no value, a note), never as 0 records.
- ``loop.false_alarms``: drift reports before the onset; baseline: ADWIN's alarms there.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from river import drift

from aif.loop import LoopConfig, LoopDriver, LoopResult
from aif.loop.factory import fresh_factory
from tests.bench.report import Figure

ROOT = Path(__file__).resolve().parents[2] / "build" / "bench-loop"
CONFIG = LoopConfig(bootstrap=2_000, stationary=800, recovery=300, max_after_onset=20_000, timeout_s=420)


def _first_model_seconds(result: LoopResult) -> float | None:
    entries = dict((what, at) for at, what in result.timeline.entries)
    start = next((at for what, at in entries.items() if "ingested" in what), None)
    end = next((at for what, at in entries.items() if what.startswith(f"v{result.v1} serving")), None)
    return None if start is None or end is None else end - start


def adwin_on_served(result: LoopResult) -> tuple[int | None, int, int]:
    """ADWIN on the served stream's errors: (records from onset to its first alarm or None,
    alarms before the onset, records it saw after the onset)."""
    end = result.v2_first_index if result.v2_first_index is not None else len(result.served)
    detector = drift.ADWIN()
    false_alarms = 0
    for i, s in enumerate(result.served[:end]):
        detector.update(float((s.probability >= 0.5) != (s.label == 1)))
        if detector.drift_detected:
            if i < result.onset_index:
                false_alarms += 1
            else:
                return i - result.onset_index, false_alarms, end - result.onset_index
    return None, false_alarms, end - result.onset_index


def figures_of(result: LoopResult) -> list[Figure]:
    adwin_at, adwin_false, adwin_seen = adwin_on_served(result)
    after_onset = len(result.served) - result.onset_index
    first = _first_model_seconds(result)
    why_open = (
        ""
        if result.closed
        else f"the loop did not close (v2={result.v2}, detected at "
        f"{result.detected_at_index}, false alarms {result.false_alarms}, recovered "
        f"{result.recovered_ratio:.2f}, audit valid {result.audit_valid})"
    )
    return [
        Figure(
            "loop.seconds",
            result.serving_after_s if result.closed else None,
            "s",
            "first_model.train_to_serving_s",
            first,
            note=why_open or ("" if first is not None else "no first-model timeline"),
            failed=bool(why_open) or first is None,
        ),
        Figure(
            "loop.detection_records",
            None if result.detected_at_index is None else float(result.detected_at_index),
            "records",
            "river.ADWIN.detection_records",
            None if adwin_at is None else float(adwin_at),
            note="; ".join(
                n
                for n in (
                    f"monitor missed: no drift report in {after_onset:,} records after onset"
                    if result.detected_at_index is None
                    else "",
                    f"ADWIN missed: no alarm in {adwin_seen:,} records after onset"
                    if adwin_at is None
                    else "",
                )
                if n
            ),
        ),
        Figure(
            "loop.false_alarms",
            float(result.false_alarms),
            "alarms",
            "river.ADWIN.false_alarms",
            float(adwin_false),
        ),
    ]


def measure_loop(config: LoopConfig = CONFIG) -> list[Figure]:
    with fresh_factory(
        ROOT, kafka_port=26092, triton_port=26000, service_offset=12200, say=lambda _: None
    ) as factory:

        async def drive() -> LoopResult:
            async with LoopDriver(
                factory.kafka.bootstrap_servers,
                factory.targets(),
                factory.stack.metadata("bench"),
                config,
                say=lambda _: None,
            ) as driver:
                return await driver.run()

        result = asyncio.run(drive())
    return figures_of(result)
