"""loop.seconds: drift onset → the new champion serving, on a fresh factory (what `make demo` runs).

The baseline is the time the same factory took, in the same run, to take its first
model from "train" to "serving" (training, evaluation, promotion, Triton load): the
least a retraining can cost; the rest of loop.seconds is detection and waiting for
enough data after the change. The issue's target is ≤ 120 s on this machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aif.loop import LoopConfig, LoopDriver, LoopResult
from aif.loop.factory import fresh_factory
from tests.bench.report import Figure

ROOT = Path(__file__).resolve().parents[2] / "build" / "bench-loop"
CONFIG = LoopConfig(bootstrap=2_000, stationary=800, recovery=300, max_after_onset=20_000, timeout_s=420)


def _first_model_seconds(result: LoopResult) -> float:
    entries = dict((what, at) for at, what in result.timeline.entries)
    start = next(at for what, at in entries.items() if "ingested" in what)
    end = next(at for what, at in entries.items() if what.startswith(f"v{result.v1} serving"))
    return end - start


def measure_loop() -> list[Figure]:
    with fresh_factory(
        ROOT, kafka_port=32092, triton_port=32000, service_offset=12200, say=lambda _: None
    ) as factory:

        async def drive() -> LoopResult:
            async with LoopDriver(
                factory.kafka.bootstrap_servers,
                factory.targets(),
                factory.stack.metadata("bench"),
                CONFIG,
                say=lambda _: None,
            ) as driver:
                return await driver.run()

        result = asyncio.run(drive())
    if result.serving_after_s is None:
        raise RuntimeError("the loop did not close: no loop.seconds to report")
    first = _first_model_seconds(result)
    return [
        Figure("loop.seconds", result.serving_after_s, "s", "first_model.train_to_serving_s", first),
        Figure(
            "loop.detection_records",
            float(result.detected_at_index or 0),
            "records",
            "monitor.min_samples",
            300.0,
        ),
    ]
