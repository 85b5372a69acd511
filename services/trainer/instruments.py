"""The trainer's OpenTelemetry metrics (exported on its Prometheus endpoint)."""

from __future__ import annotations

from opentelemetry import metrics


class TrainerMetrics:
    def __init__(self, meter: metrics.Meter) -> None:
        self._epochs = meter.create_counter(
            "aif.trainer.epochs", unit="{epoch}", description="Epochs trained"
        )
        self._samples = meter.create_counter(
            "aif.trainer.samples", unit="{sample}", description="Training samples processed (rows × epochs)"
        )
        self._throughput = meter.create_gauge(
            "aif.trainer.throughput", unit="{sample}/s", description="Training throughput of the last epoch"
        )
        self._loss = meter.create_gauge(
            "aif.trainer.last_loss", description="Loss of the last epoch, by split"
        )
        self._jobs = meter.create_counter(
            "aif.trainer.jobs",
            unit="{job}",
            description="Training jobs by outcome (queued, deferred, skipped, succeeded, failed)",
        )
        self._gave_up = meter.create_counter(
            "aif.trainer.jobs.gave_up",
            unit="{job}",
            description="Jobs that waited their bounded time for data and ended without training, by code",
        )
        self._quarantined = meter.create_counter(
            "aif.trainer.quarantined_labels",
            unit="{label}",
            description="Labels the training sets of trained jobs left out (no feature row of their own), by reason",
        )
        self._duration = meter.create_histogram(
            "aif.trainer.training.duration", unit="s", description="Wall time of a training job"
        )

    def epoch(
        self, use_case: str, *, samples: int, samples_per_s: float, train_loss: float, val_loss: float
    ) -> None:
        attrs = {"use_case": use_case}
        self._epochs.add(1, attrs)
        self._samples.add(samples, attrs)
        self._throughput.set(samples_per_s, attrs)
        self._loss.set(train_loss, {**attrs, "split": "train"})
        self._loss.set(val_loss, {**attrs, "split": "validation"})

    def job(self, use_case: str, outcome: str) -> None:
        self._jobs.add(1, {"use_case": use_case, "outcome": outcome})

    def gave_up(self, use_case: str, code: str) -> None:
        self._gave_up.add(1, {"use_case": use_case, "code": code})

    def quarantined(self, use_case: str, reason: str, count: int) -> None:
        self._quarantined.add(count, {"use_case": use_case, "reason": reason})

    def duration(self, use_case: str, seconds: float) -> None:
        self._duration.record(seconds, {"use_case": use_case})
