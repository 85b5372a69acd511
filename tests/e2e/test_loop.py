"""The closed loop on the real parts: drift → retrain → evaluate → promote → serve.

A smaller run of exactly what `make demo` does: a fresh Kafka and Triton, the seven
services as separate processes, the loan-approval use case driven from outside. Three
runs, each on a fresh factory: outcomes reported at once (with orphan and poisoned
labels injected during the loop), outcomes delayed by seconds of wall time, and
outcomes delayed by minutes of event time (both drawn up to the spec's max_delay).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from aif.loop import LoopConfig, LoopDriver, LoopResult, report
from aif.loop.factory import fresh_factory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2] / "build" / "e2e-loop"
CONFIG = LoopConfig(bootstrap=2_000, stationary=800, recovery=600, max_after_onset=20_000, timeout_s=420)
ORPHANS, POISONED = 24, 10
RUNS = {
    "instant-with-injected-labels": dataclasses.replace(CONFIG, orphans=ORPHANS, poisoned=POISONED),
    "wall-delay": dataclasses.replace(CONFIG, outcome_delay="wall"),
    "event-delay": dataclasses.replace(CONFIG, outcome_delay="event"),
}


@pytest.fixture(scope="module", params=list(RUNS))
def result(request: pytest.FixtureRequest) -> LoopResult:
    config = RUNS[request.param]
    started = time.monotonic()
    with fresh_factory(
        ROOT, kafka_port=31092, triton_port=31000, service_offset=11800, restart_exited=True
    ) as factory:

        async def drive() -> LoopResult:
            async with LoopDriver(
                factory.kafka.bootstrap_servers,
                factory.targets(),
                factory.stack.metadata("e2e-operator"),
                config,
            ) as driver:
                return await driver.run()

        outcome = asyncio.run(drive())
        # A service that exited was started again (as its supervisor would): say so.
        restarted = dict(factory.stack.restarts)
    print(
        f"[{request.param}] loop run took {time.monotonic() - started:.0f}s; "
        f"services restarted: {restarted or 'none'}",
        report.timeline(outcome),
        report.quality_table(outcome),
        report.summary(outcome),
        sep="\n\n",
    )
    return outcome


def test_no_alarm_on_the_stationary_prefix(result: LoopResult) -> None:
    assert result.false_alarms == 0


def test_drift_detected_within_a_bounded_number_of_records(result: LoopResult) -> None:
    assert result.detected_at_index is not None, "the monitor never reported the drift"
    assert result.detected_at_index <= 600
    assert result.drift_report_id


def test_a_new_version_is_promoted_and_serving(result: LoopResult) -> None:
    assert result.v2 is not None and result.v2 > result.v1
    assert result.serving_after_s is not None


def test_quality_recovers_to_95_percent_of_the_pre_drift_level(result: LoopResult) -> None:
    q = result.quality()
    assert q["during drift"]["accuracy"] < q["before drift"]["accuracy"] - 0.1, "the drift did not hurt"
    assert q["after recovery"]["n"] >= 500
    assert result.recovered_ratio >= 0.95, q


def test_every_step_is_in_the_audit_log(result: LoopResult) -> None:
    assert result.audit_valid
    # ...and the registry checked it against the checkpoints it signed outside its database.
    assert "signed checkpoints on aif.audit.checkpoints" in result.audit_anchor, result.audit_anchor
    actions = [(e.action, e.model.version) for page in result.audit_events for e in page.audit_events]
    for version in (result.v1, result.v2):
        assert ("model_version.registered", version) in actions
        assert ("model_version.evaluated", version) in actions
        assert any(a.startswith("alias.") and v == version for a, v in actions), actions
    drift_steps = [
        e
        for page in result.audit_events
        for e in page.audit_events
        if e.model.version == result.v2 and result.drift_report_id in e.evidence_ids
    ]
    assert drift_steps or result.lineage is not None


def test_lineage_links_a_prediction_to_the_drift_that_caused_its_model(result: LoopResult) -> None:
    lineage = result.lineage
    assert lineage is not None
    version = lineage.model_version
    assert version.ref.version == result.v2
    # A drift report the monitor raised after the onset: the first one's, or, when the gates
    # refused that retraining's candidate, the re-alarm's that trained the one serving.
    assert version.drift_report_id in result.drift_reports, (version.drift_report_id, result.drift_reports)
    assert version.run_id and version.datasets and version.features
    assert lineage.run.run_id == version.run_id


def test_v2_was_caused_by_the_drift_report_its_lineage_names(result: LoopResult) -> None:
    # Read from the registry's lineage API: v2's drift report must be one the monitor
    # raised after the onset. An unlinked v2 (empty id) or one linked to a report the
    # monitor never raised fails.
    assert result.v2_drift_report_id, "v2's lineage names no drift report"
    assert result.v2_drift_report_id in result.drift_reports, (
        result.v2_drift_report_id,
        result.drift_reports,
    )
    assert result.causal and result.closed


def test_injected_labels_are_quarantined_or_dead_lettered_exactly(result: LoopResult) -> None:
    if not result.config.orphans and not result.config.poisoned:
        pytest.skip("this run injects no labels")
    assert result.orphans_injected == ORPHANS and result.poisoned_injected == POISONED
    # Orphans reach the labels dataset and are left out of v2's training set, counted.
    assert result.quarantined == {"no_feature_row": ORPHANS, "entity_mismatch": 0, "ambiguous_event_time": 0}
    # Poisoned outcomes never become labels: the feature store dead-letters each one.
    assert result.poisoned_dead_lettered == POISONED
