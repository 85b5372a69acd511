"""The monitor's OpenTelemetry metrics (exported on its Prometheus endpoint).

- ``aif.monitor.feature.psi`` (gauge): PSI of each feature in the last window, per version.
- ``aif.monitor.quality`` (gauge): live quality metric of the last window, per version.
- ``aif.monitor.alarms`` (counter): drift episodes opened and rollbacks requested.
- ``aif.monitor.join.{joined,expired,late,unmatched}`` (counters): the outcome join.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from services.monitor.domain import Effects, EvidenceKind
from services.monitor.join import Joiner


class MonitorMetrics:
    def __init__(self, meter: Meter, joiners: Callable[[], Mapping[str, Joiner]]) -> None:
        self._joiners = joiners
        self._psi = meter.create_gauge(
            "aif.monitor.feature.psi",
            description="PSI of a feature's last live window against the training reference",
        )
        self._quality = meter.create_gauge(
            "aif.monitor.quality", description="live quality of the last window of labelled predictions"
        )
        self._alarms = meter.create_counter(
            "aif.monitor.alarms", description="drift episodes opened and rollbacks requested"
        )
        for name, what in (
            ("joined", "outcomes joined to their prediction"),
            ("expired", "predictions whose outcome never came within label.max_delay"),
            ("late", "outcomes dropped: observed beyond label.max_delay after the prediction"),
            ("unmatched", "outcomes whose prediction never came"),
        ):
            meter.create_observable_counter(
                f"aif.monitor.join.{name}", callbacks=[self._observer(name)], description=what
            )

    def _observer(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(getattr(j.counts, name), {"use_case": uc}) for uc, j in self._joiners().items()
            ]

        return observe

    def record(self, effects: Effects) -> None:
        for report in effects.reports:
            attrs: dict[str, str | int] = {
                "use_case": report.model.use_case,
                "model_version": report.model.version,
            }
            for e in report.evidence:
                if e.kind == EvidenceKind.FEATURE and e.statistic == "psi":
                    self._psi.set(e.value, {**attrs, "feature": e.feature})
                elif e.kind == EvidenceKind.PERFORMANCE and e.statistic != "cusum_llr":
                    self._quality.set(e.value, {**attrs, "metric": e.statistic})
        for alarm in effects.alarms:
            self._alarms.add(1, {"use_case": alarm.model.use_case, "kind": "drift"})
        for request in effects.rollbacks:
            self._alarms.add(1, {"use_case": request.model.use_case, "kind": "rollback"})
