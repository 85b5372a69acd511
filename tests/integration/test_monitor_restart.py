"""The monitor killed with SIGKILL mid-loop loses no join and still detects the drift.

The monitor runs as a real process (``python -m services.monitor``) on the real broker. It
reads every prediction of a LoanStream whose concept drifts at record 1500 (all of them
wait for their outcome: ``max_delay`` is an hour, the stream lasts 43 minutes of event
time) and the outcomes of the first 1510 records: the drift has begun, no alarm yet. It is
killed (SIGKILL: no shutdown, no final checkpoint), started again, and given the other
outcomes. Counted from the monitor's own metrics (``aif.monitor.join.joined``): every one of
the 2600 outcomes is joined exactly once; and exactly one ``DriftDetected`` is published.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from aif import infra
from aif.stack.catalogue import new_topic as new_catalogue_topic
from aif.stack.catalogue import seed_catalogue
from aifactory.gateway.v1 import events_pb2 as gateway_events
from aifactory.monitor.v1 import events_pb2 as monitor_events
from libs.bus import EventPublisher, Outgoing
from libs.usecase import DEFAULT_DIR
from services.monitor.domain import VersionKey
from tests.integration.test_monitor import read_all
from tests.unit.monitor import loanstream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

USE_CASE = "loan_kill"
N, DRIFT_AT, KILL_AT = 2600, 1500, 1510
MODEL = VersionKey(USE_CASE, USE_CASE, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MonitorProcess:
    env: dict[str, str]
    log: Path
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.monitor"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def joins(self) -> dict[str, float]:
        """The ``aif.monitor.join.*`` counters of the use case, from the metrics endpoint."""
        assert self.proc is not None
        assert self.proc.poll() is None, f"monitor exited {self.proc.returncode}:\n{self.tail()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        found = re.findall(
            rf'^aif_monitor_join_(\w+?)(?:_total)?{{[^}}]*use_case="{USE_CASE}"[^}}]*}} (\S+)$', text, re.M
        )
        return {name: float(value) for name, value in found}

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def until_joined(self, n: int, timeout: float = 90) -> dict[str, float]:
        """The counters once ``joined`` reaches ``n`` (or as they are at the timeout)."""
        deadline = time.monotonic() + timeout
        counts: dict[str, float] = {}
        while time.monotonic() < deadline:
            counts = await asyncio.to_thread(self.joins)
            if counts.get("joined", 0) >= n:
                # Settled: nothing more arrives (a doubled join would show here).
                await asyncio.sleep(1.0)
                return await asyncio.to_thread(self.joins)
            await asyncio.sleep(0.3)
        return counts


@pytest.fixture
async def monitor(
    kafka: infra.KafkaHandle, new_topic: Any, tmp_path: Path
) -> AsyncIterator[tuple[MonitorProcess, dict[str, str]]]:
    names = ("predictions", "feedback", "promoted", "drift", "rollback", "dlq")
    topics = {name: await new_topic(f"monkill-{name}") for name in names}
    usecases = tmp_path / "usecases"
    usecases.mkdir()
    spec = yaml.safe_load((DEFAULT_DIR / "loan_approval.yaml").read_text())
    spec["name"] = USE_CASE
    (usecases / f"{USE_CASE}.yaml").write_text(yaml.safe_dump(spec))
    # The monitor alone (no registry) learns it from a catalogue topic of this test's own.
    catalogue = new_catalogue_topic("monkill")
    await seed_catalogue(kafka.bootstrap_servers, catalogue, [usecases / f"{USE_CASE}.yaml"])
    metrics_port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "AIF_AUTH_MODE": "off",
        "AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "AIF_MONITOR_GRPC_PORT": str(free_port()),
        "AIF_MONITOR_METRICS_PORT": str(metrics_port),
        "AIF_MONITOR_USECASES_TOPIC": catalogue,
        "AIF_MONITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'monitor.db'}",
        "AIF_MONITOR_REGISTRY_TARGET": "",
        "AIF_MONITOR_CONSUMER_GROUP": f"monitor-{topics['predictions']}",
        "AIF_MONITOR_PREDICTIONS_TOPIC": topics["predictions"],
        "AIF_MONITOR_FEEDBACK_TOPIC": topics["feedback"],
        "AIF_MONITOR_MODEL_PROMOTED_TOPIC": topics["promoted"],
        "AIF_MONITOR_DRIFT_DETECTED_TOPIC": topics["drift"],
        "AIF_MONITOR_ROLLBACK_TOPIC": topics["rollback"],
        "AIF_MONITOR_DEAD_LETTER_TOPIC": topics["dlq"],
        "AIF_MONITOR_RELAY_INTERVAL_S": "0.2",
        "AIF_MONITOR_CHECKPOINT_EVERY": "1000",
    }
    proc = MonitorProcess(env, tmp_path / "monitor.log", metrics_port)
    yield proc, topics
    await asyncio.to_thread(proc.stop)


async def _send(kafka: str, topic: str, events: list[Any]) -> None:
    publisher = EventPublisher(kafka, producer="gateway-test")
    await publisher.start()
    try:
        for start in range(0, len(events), 500):
            await publisher.publish_many(
                [Outgoing(topic, e, USE_CASE, key=e.prediction_id) for e in events[start : start + 500]]
            )
    finally:
        await publisher.stop()


async def test_a_monitor_killed_mid_loop_loses_no_join_and_detects_the_drift(
    kafka: infra.KafkaHandle, monitor: tuple[MonitorProcess, dict[str, str]]
) -> None:
    proc, topics = monitor
    stream = loanstream.events(loanstream.rule_scorer(), n=N, drift_at=DRIFT_AT, model=MODEL)
    predictions = [t.event for t in stream if isinstance(t.event, gateway_events.PredictionLogged)]
    outcomes = [t for t in stream if isinstance(t.event, gateway_events.FeedbackRecorded)]
    for p in predictions:
        p.use_case = USE_CASE
    for t in outcomes:
        t.event.use_case = USE_CASE
    before = [t.event for t in outcomes if t.index < KILL_AT]
    after = [t.event for t in outcomes if t.index >= KILL_AT]

    proc.start()
    await _send(kafka.bootstrap_servers, topics["predictions"], predictions)
    await _send(kafka.bootstrap_servers, topics["feedback"], before)
    counts = await proc.until_joined(KILL_AT)
    assert counts.get("joined") == KILL_AT, f"{counts}\n{proc.tail()}"
    drift = await read_all(kafka.bootstrap_servers, topics["drift"], monitor_events.DriftDetected, settle=0.5)
    assert drift == []  # mid-drift: the onset is read, the alarm not yet raised

    proc.kill()  # N - KILL_AT predictions wait for their outcome; the detector is mid-excursion
    proc.start()
    await _send(kafka.bootstrap_servers, topics["feedback"], after)
    counts = await proc.until_joined(N)
    assert counts.get("joined") == N, f"joins after the kill: {counts}\n{proc.tail()}"
    assert counts.get("duplicates", 0) == 0 and counts.get("unmatched", 0) == 0, counts

    async def alarms() -> list[Any]:
        return await read_all(
            kafka.bootstrap_servers, topics["drift"], monitor_events.DriftDetected, settle=0.5
        )

    deadline = time.monotonic() + 30
    found = await alarms()
    while not found and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        found = await alarms()
    assert len(found) == 1, f"drift alarms: {len(found)}\n{proc.tail()}"
    (_, event) = found[0]
    assert event.model.version == MODEL.version and event.evidence[0].statistic == "cusum_llr"
