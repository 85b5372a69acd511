"""Everything the monitor tracks for one served model version, and its alarm episodes.

Signals, each with its own evidence:
- ``cusum``: the LLR-CUSUM quality detector (:mod:`services.monitor.detectors`) on the
  per-record errors of labelled predictions: the primary concept-drift signal. It raises
  at once (a sequential test with its own false-alarm control) and clears after
  ``drift.hysteresis`` consecutive quality windows without an alarm whose error level is
  back under the midpoint between the baseline and the alarm level.
- ``quality``: the spec's evaluation metric per tumbling window of labelled predictions
  against the reference's validation quality (``drift.quality_drop``).
- ``feature:<name>`` and ``prediction``: distribution drift per tumbling window of
  predictions against the training reference (PSI/KS/chi-square).
Windowed signals raise after ``drift.hysteresis`` consecutive windows over threshold and
clear after as many under. Windows hold ``max(drift.window, drift.min_samples)`` items.

An *episode* opens when a signal raises while the version serves as champion and no
episode is open: that, and only that, publishes a ``DriftDetected`` (at most once per
episode); it closes when every signal has cleared, or when the version stops serving.
An episode still open ``drift.realarm_windows`` windows after it opened, with the same
champion serving, is closed and a new one opened on the signals still active: the
retraining its alarm asked for failed, its candidate was refused by the gates, or the
event was lost, and the drift is still there. The trainer's cooldown and daily budget
bound what the repeated alarms cost. Within one drift the CUSUM evidence keeps the change
point of its first alarm, and a report holds every piece of evidence its alarm names, so a
re-alarm's retraining trains from where the drift began.
The tracker's state (detector, signals, episode, recent labelled predictions) is saved
with every report, so a restarted monitor resumes instead of alarming again.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from libs.usecase import UseCase
from services.monitor import journal
from services.monitor.detectors import THRESHOLD, CusumDetector, change_point
from services.monitor.distribution import window_evidence
from services.monitor.domain import (
    CHAMPION,
    Alert,
    DriftAlarm,
    Effects,
    Evidence,
    EvidenceKind,
    Labelled,
    Outcome,
    Prediction,
    Report,
    Severity,
    VersionKey,
)
from services.monitor.hysteresis import Hysteresis
from services.monitor.quality import live_metrics, quality_evidence

CUSUM = "cusum"
QUALITY = "quality"
PREDICTION = "prediction"
FEATURE = "feature:"
PERFORMANCE_SIGNALS = (CUSUM, QUALITY)
# Alarms (and change points) kept in the saved detector state.
_KEEP_ALARMS = 20


@dataclasses.dataclass
class Episode:
    open: bool = False
    number: int = 0
    report_id: str = ""
    alert_id: str = ""
    # Windows reported since the episode opened (the re-alarm clock).
    windows: int = 0


def state_key(key: VersionKey) -> str:
    return f"version:{key}"


def id_stem(key: VersionKey) -> str:
    """The start of the ids of a version's reports: short (the trainer makes job ids of
    them, at most 120 characters) and readable: ``<use case>[.<model>].v<n>``."""
    base = key.use_case if key.model_name == key.use_case else f"{key.use_case}.{key.model_name}"
    if len(base) > 80:
        base = f"{key.use_case}.{hashlib.sha256(key.model_name.encode()).hexdigest()[:12]}"
    return f"{base}.v{key.version}"


class VersionTracker:
    def __init__(
        self,
        key: VersionKey,
        uc: UseCase,
        clock: Callable[[], datetime],
        saved: Mapping[str, Any] | None = None,
    ) -> None:
        self.key = key
        self.uc = uc
        self.clock = clock
        self.size = max(uc.drift.window, uc.drift.min_samples)
        self.reference: Mapping[str, Any] | None = None
        self.alias = CHAMPION
        self.window: list[Prediction] = []
        self.labels: list[Labelled] = []
        # The last ``size`` labelled predictions: live quality for rollback comparisons.
        self.recent: deque[Labelled] = deque(maxlen=self.size)
        self.detector = CusumDetector(
            quality_drop=uc.drift.quality_drop,
            burn_in=max(300, uc.drift.min_samples),
            regression=uc.task == "regression",
        )
        self.signals: dict[str, Hysteresis] = {}
        self.episode = Episode()
        self.feature_windows = 0
        self.quality_windows = 0
        self.suppressed = 0  # detector alarms inside an open episode (not published)
        self.realarms = 0  # episodes opened again on a drift that outlived its alarm
        self.onset_at: datetime | None = None
        self._alarm_in_window = False
        self._drifted: dict[str, tuple[Evidence, ...]] = {}
        self.last_quality: dict[str, float] = {}
        if saved:
            self._restore(saved)

    # ------------------------------------------------------------------ inputs
    def on_prediction(self, p: Prediction, effects: Effects) -> None:
        self.alias = p.alias
        self.window.append(p)
        if len(self.window) >= self.size:
            self._close_feature_window(effects)

    def on_labelled(self, item: Labelled, effects: Effects) -> None:
        self.recent.append(item)
        self.labels.append(item)
        det = self.detector
        if det.update(item.error):
            self._alarm_in_window = True
            self._cusum_alarm(item, effects)
        elif det.onset == det.seen:
            self.onset_at = item.data_time
        if len(self.labels) >= self.size:
            self._close_quality_window(effects)

    # ------------------------------------------------------------------ windows
    def _signal(self, name: str) -> Hysteresis:
        if name not in self.signals:
            self.signals[name] = Hysteresis(self.uc.drift.hysteresis)
        return self.signals[name]

    def _close_feature_window(self, effects: Effects) -> None:
        window, self.window = self.window, []
        self.feature_windows += 1
        if self.reference is None:
            return
        evidence = window_evidence(self.uc, self.reference, window)
        groups: dict[str, list[Evidence]] = {}
        for e in evidence:
            name = PREDICTION if e.kind == EvidenceKind.PREDICTION else FEATURE + e.feature
            groups.setdefault(name, []).append(e)
        raised = self._update_signals({n: tuple(g) for n, g in groups.items()})
        report_id = f"{id_stem(self.key)}.dist.{self.feature_windows}"
        self._report(report_id, evidence, window[0].at, window[-1].at, raised, effects)

    def _close_quality_window(self, effects: Effects) -> None:
        labels, self.labels = self.labels, []
        self.quality_windows += 1
        evidence = quality_evidence(self.uc, self.reference, labels)
        self.last_quality = {e.feature: e.value for e in evidence}
        raised = self._update_signals({QUALITY: tuple(evidence)})
        cusum = self.signals.get(CUSUM)
        if cusum is not None and cusum.active:
            calm = not self._alarm_in_window and self._calm(labels)
            if cusum.update(not calm) is False:
                self._drifted.pop(CUSUM, None)
        self._alarm_in_window = False
        report_id = f"{id_stem(self.key)}.quality.{self.quality_windows}"
        self._report(report_id, evidence, labels[0].prediction.at, labels[-1].prediction.at, raised, effects)

    def _calm(self, labels: list[Labelled]) -> bool:
        """Is the window's error level back under the midpoint of baseline and alarm level?"""
        baseline = self.detector.baseline
        if baseline is None:
            return True
        level = sum(item.error for item in labels) / len(labels)
        drop = self.uc.drift.quality_drop / 2
        return level <= (baseline * (1 + drop) if self.detector.regression else baseline + drop)

    def _update_signals(self, groups: Mapping[str, tuple[Evidence, ...]]) -> list[str]:
        raised = []
        for name, evidence in groups.items():
            drifted = any(e.drifted for e in evidence)
            change = self._signal(name).update(drifted)
            if drifted:
                self._drifted[name] = tuple(e for e in evidence if e.drifted)
            elif change is False:
                self._drifted.pop(name, None)
            if change:
                raised.append(name)
        return raised

    def _report(
        self,
        report_id: str,
        evidence: list[Evidence],
        start: datetime,
        end: datetime,
        raised: list[str],
        effects: Effects,
    ) -> None:
        if self.episode.open:
            raised = sorted({*raised, *self._realarm_due(effects)})
        alarm = self._open(report_id, raised, effects) if raised else None
        stored = tuple(evidence)
        if alarm:
            # The report holds all its alarm names (a re-alarm names the CUSUM's change point
            # too): the trainer confirms a DriftDetected against it and keeps only that.
            own = {(e.feature, e.statistic) for e in stored}
            stored += tuple(e for e in alarm if (e.feature, e.statistic) not in own)
        effects.reports.append(
            Report(report_id, self.key, alarm is not None, stored, start, end, self.clock())
        )
        self._maybe_close(effects)
        effects.states[state_key(self.key)] = self.state()

    # ------------------------------------------------------------------ the quality detector
    def _cusum_alarm(self, item: Labelled, effects: Effects) -> None:
        det = self.detector
        change_at, size = self._change_point(item)
        self.onset_at = None
        # window_start is the estimated change point, where a retraining's data begins.
        evidence = Evidence(
            "error",
            "cusum_llr",
            det.peak,
            THRESHOLD,
            change_at,
            item.prediction.at,
            size,
            EvidenceKind.PERFORMANCE,
            True,
        )
        self._drifted[CUSUM] = (evidence,)
        self._signal(CUSUM).raise_now()
        if self.episode.open or self.alias != CHAMPION:
            self.suppressed += 1
            return
        report_id = f"{id_stem(self.key)}.cusum.{len(det.alarms)}"
        self._report(report_id, [evidence], change_at, item.prediction.at, [CUSUM], effects)

    def _change_point(self, item: Labelled) -> tuple[datetime, int]:
        """The estimated change point of the alarm ``item`` raised, in the data's own time,
        and the labelled records from it on.

        Re-estimated on the recent labelled records sorted by data time
        (:func:`~services.monitor.detectors.change_point`), since the detector saw them in
        the order their outcomes arrived. When the shift began before the oldest of them,
        the detector's own estimate (where its statistic last left zero) stands.

        Within an open episode the earlier change point of its first alarm stands: the
        statistic restarts after each alarm, but the drift began there, and a re-alarm's
        retraining (its candidate was refused, say) should train from there."""
        det = self.detector
        at, size = item.data_time, det.seen - det.change_points[-1] + 1
        if det.change_points[-1] != det.seen and self.onset_at is not None:
            at = self.onset_at
        recent = sorted(self.recent, key=lambda i: i.data_time)
        assert det.baseline is not None  # an alarm comes only after the burn-in
        k = change_point([i.error for i in recent], det.baseline, regression=det.regression)
        if k is not None and not (k == 0 and at < recent[0].data_time):
            at, size = recent[k].data_time, len(recent) - k
        kept = self._drifted.get(CUSUM, ()) if self.episode.open else ()
        if kept and len(det.alarms) >= 2 and kept[0].window_start < at:
            at, size = kept[0].window_start, kept[0].sample_size + det.alarms[-1] - det.alarms[-2]
        return at, size

    # ------------------------------------------------------------------ episodes
    def _open(self, report_id: str, raised: list[str], effects: Effects) -> tuple[Evidence, ...] | None:
        """Open an episode and raise its alarm; its evidence, or None when none opened."""
        if self.episode.open or self.alias != CHAMPION:
            return None
        now = self.clock()
        self.episode = Episode(True, self.episode.number + 1, report_id, f"alert.{report_id}")
        evidence = tuple(
            e for name, active in self.signals.items() if active.active for e in self._drifted.get(name, ())
        )
        effects.alarms.append(DriftAlarm(report_id, self.key, evidence, now))
        performance = any(name in PERFORMANCE_SIGNALS for name in raised)
        what = ", ".join(sorted({f"{e.feature} {e.statistic}={e.value:.4g}" for e in evidence})) or ", ".join(
            raised
        )
        effects.alerts.append(
            Alert(
                self.episode.alert_id,
                self.key,
                Severity.CRITICAL if performance else Severity.WARNING,
                "performance" if performance else "drift",
                f"{self.key}: drift detected ({what})",
                report_id,
                now,
            )
        )
        return evidence

    def _realarm_due(self, effects: Effects) -> list[str]:
        """Count one more window of the open episode; when it has stood for
        ``drift.realarm_windows`` of them with the same champion and a signal still
        active, close it and answer the active signals, to be raised again."""
        self.episode.windows += 1
        active = [name for name, s in self.signals.items() if s.active]
        if self.episode.windows < self.uc.drift.realarm_windows or self.alias != CHAMPION or not active:
            return []
        self.close_episode(effects)
        self.realarms += 1
        return active

    def _maybe_close(self, effects: Effects) -> None:
        if self.episode.open and not any(s.active for s in self.signals.values()):
            self.close_episode(effects)

    def close_episode(self, effects: Effects, *, reset: bool = False) -> None:
        """End the open episode (its alert resolved); ``reset`` also forgets the signals
        and the detector's running statistic (the version stopped serving)."""
        if self.episode.open:
            self.episode = dataclasses.replace(self.episode, open=False)
            effects.resolved[self.episode.alert_id] = self.clock()
        if reset:
            self.signals.clear()
            self._drifted.clear()
            self.detector.statistic, self.detector.onset, self.onset_at = 0.0, 0, None
            self.window, self.labels = [], []
        effects.states[state_key(self.key)] = self.state()

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        det = dataclasses.asdict(self.detector)
        det["alarms"] = det["alarms"][-_KEEP_ALARMS:]
        det["change_points"] = det["change_points"][-_KEEP_ALARMS:]
        return {
            "detector": det,
            "signals": {n: [s.over, s.under, s.active] for n, s in self.signals.items()},
            "episode": dataclasses.asdict(self.episode),
            "feature_windows": self.feature_windows,
            "quality_windows": self.quality_windows,
            "suppressed": self.suppressed,
            "realarms": self.realarms,
            "alias": self.alias,
            "recent": [
                [i.prediction.at.isoformat(), i.prediction.score, i.prediction.predicted, i.outcome.value]
                for i in self.recent
            ],
        }

    def _restore(self, saved: Mapping[str, Any]) -> None:
        self.detector = CusumDetector(**saved["detector"])
        for name, (over, under, active) in saved.get("signals", {}).items():
            self.signals[name] = Hysteresis(self.uc.drift.hysteresis, over, under, active)
        self.episode = Episode(**saved.get("episode", {}))
        self.feature_windows = int(saved.get("feature_windows", 0))
        self.quality_windows = int(saved.get("quality_windows", 0))
        self.suppressed = int(saved.get("suppressed", 0))
        self.realarms = int(saved.get("realarms", 0))
        self.alias = str(saved.get("alias", CHAMPION))
        for at, score, predicted, outcome in saved.get("recent", []):
            when = datetime.fromisoformat(at)
            self.recent.append(
                Labelled(
                    Prediction("", self.key, when, {}, score, predicted),
                    Outcome("", self.key.use_case, outcome, when),
                )
            )

    def checkpoint(self) -> dict[str, Any]:
        """Everything the tracker holds but its reference (fetched again), as JSON: the
        saved state plus the windows in progress and the detector's running details."""
        return {
            "state": self.state(),
            "window": [journal.prediction_doc(p) for p in self.window],
            "labels": [journal.labelled_doc(i) for i in self.labels],
            "recent": [journal.labelled_doc(i) for i in self.recent],
            "onset_at": self.onset_at.isoformat() if self.onset_at else None,
            "alarm_in_window": self._alarm_in_window,
            "drifted": {n: [journal.evidence_doc(e) for e in ev] for n, ev in self._drifted.items()},
            "last_quality": self.last_quality,
        }

    def resume(self, saved: Mapping[str, Any]) -> None:
        """Take back what :meth:`checkpoint` wrote."""
        self._restore(saved["state"])
        self.window = [journal.prediction_of(d) for d in saved["window"]]
        self.labels = [journal.labelled_of(d) for d in saved["labels"]]
        self.recent.clear()
        self.recent.extend(journal.labelled_of(d) for d in saved["recent"])
        self.onset_at = datetime.fromisoformat(saved["onset_at"]) if saved["onset_at"] else None
        self._alarm_in_window = bool(saved["alarm_in_window"])
        self._drifted = {n: tuple(map(journal.evidence_of, ev)) for n, ev in saved["drifted"].items()}
        self.last_quality = dict(saved["last_quality"])

    def quality_of_recent(self) -> tuple[dict[str, float], int]:
        """Live metrics over the last ``size`` labelled predictions, and how many there were."""
        return live_metrics(self.uc.task, list(self.recent)), len(self.recent)
