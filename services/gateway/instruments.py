"""The gateway's OpenTelemetry instruments (the prediction log counts its own drops).

Counters are read at scrape time: the hot path only bumps plain integers.
"""

from __future__ import annotations

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from services.gateway.servicer import OipStats
from services.gateway.triton import Triton


def observe(meter: Meter, triton: Triton, oip: OipStats | None) -> None:
    def triton_calls(_: CallbackOptions) -> list[Observation]:
        return [Observation(triton.calls)]

    def coalesced(_: CallbackOptions) -> list[Observation]:
        return [Observation(triton.coalesced_rows)]

    meter.create_observable_counter(
        "aif.gateway.triton.calls", [triton_calls], description="inference calls to Triton"
    )
    meter.create_observable_counter(
        "aif.gateway.triton.coalesced_rows", [coalesced], description="rows sent to Triton in coalesced calls"
    )
    if oip is not None:
        stats = oip

        def oip_requests(_: CallbackOptions) -> list[Observation]:
            return [
                Observation(stats.requests - stats.failed, {"status": "ok"}),
                Observation(stats.failed, {"status": "error"}),
            ]

        meter.create_observable_counter(
            "aif.gateway.oip.requests",
            [oip_requests],
            description="Open Inference Protocol inference requests",
        )
