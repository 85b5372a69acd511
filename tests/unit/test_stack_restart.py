"""A service restarted alone that fails to come up takes nothing else down with it.

The chaos suite's watchdog restarts a service that exited on its own; when Kafka was
restarting at that moment, the new process exited too, and the stack used to stop every
service in answer (the rule for a whole stack's start). Real processes here, stand-ins for
the services: a sleeper is "SERVING" while it runs, and the health check asks just that.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import aif.stack as stack_module
from aif.stack import Stack
from libs.auth import DevAuth
from libs.errors import Unavailable

SLEEPER = "import time; time.sleep(120)"


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    failing: set[str] = set()
    real_popen = subprocess.Popen

    def popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        name = args[-1].removeprefix("services.")
        code = "raise SystemExit(70)" if name in failing else SLEEPER
        return real_popen([sys.executable, "-c", code], **kwargs)

    monkeypatch.setattr(stack_module.subprocess, "Popen", popen)
    s = Stack(tmp_path / "logs", auth=DevAuth(tmp_path / "auth"), tls=False)
    alive = {s.ports(n)[0]: n for n in ("ingestion", "gateway", "monitor")}

    def check(target: str, timeout: float = 0.5, tls: Any = None) -> bool:
        name = alive[int(target.rsplit(":", 1)[1])]
        return name not in failing and s.running[name].process.poll() is None

    monkeypatch.setattr(stack_module, "check", check)
    s.failing = failing
    yield s
    s.stop(timeout=5)


def test_a_failed_restart_of_one_service_leaves_the_others_serving(stack: Any) -> None:
    stack.start(["ingestion", "gateway", "monitor"], timeout=20)
    stack.kill("ingestion")
    stack.failing.add("ingestion")  # comes back only to exit again (its broker is down)
    with pytest.raises(Unavailable, match="ingestion exited with 70"):
        stack.restart("ingestion", timeout=20)
    assert stack.running["gateway"].process.poll() is None
    assert stack.running["monitor"].process.poll() is None
    assert "ingestion" in stack.running, "still listed: the next restart starts it again"
    stack.failing.clear()
    stack.restart("ingestion", timeout=20)
    assert stack.running["ingestion"].process.poll() is None


def test_a_failed_start_of_a_whole_stack_stops_what_it_started(stack: Any) -> None:
    stack.failing.add("monitor")
    with pytest.raises(Unavailable, match="monitor exited with 70"):
        stack.start(["ingestion", "gateway", "monitor"], timeout=20)
    assert stack.running == {}, "nothing left running, unowned, on its ports"


def test_troubles_name_each_service_its_state_and_only_what_it_logged_above_info(stack: Any) -> None:
    stack.start(["ingestion", "gateway", "monitor"], timeout=20)
    stack.kill("ingestion")
    stack.running["gateway"].log_path.write_text(
        "2026-12-06 13:28:20,897 INFO gateway x: all well\n"
        "2026-12-06 13:28:21,001 WARNING gateway x: the registry is slow\n"
        '{"time": "2026-12-06T13:28:22.000Z", "level": "INFO", "message": "quiet"}\n'
        '{"time": "2026-12-06T13:28:23.000Z", "level": "ERROR", "message": "loud"}\n'
        "Traceback (most recent call last):\n"
    )
    text = stack.troubles()
    assert "--- ingestion (exited -9;" in text
    assert "--- gateway (running;" in text and "--- monitor (running;" in text
    assert "the registry is slow" in text and '"level": "ERROR"' in text and "Traceback" in text
    assert "all well" not in text and "quiet" not in text
    assert "(nothing above INFO)" in text  # the monitor's empty log


def test_the_restarter_starts_again_a_service_that_exits_on_its_own(stack: Any) -> None:
    stack.start(["ingestion", "gateway", "monitor"], timeout=20)
    said: list[str] = []
    stack.start_restarter(said.append, interval_s=0.05)
    first = stack.running["ingestion"].process.pid
    stack.kill("ingestion")  # as a fatal error's exit would
    deadline = time.monotonic() + 20
    while (
        stack.running["ingestion"].process.pid == first
        or stack.running["ingestion"].process.poll() is not None
    ):
        assert time.monotonic() < deadline, said
        time.sleep(0.05)
    assert stack.restarts == {"ingestion": 1}
    assert any("ingestion exited on its own with -9; restarting it" in line for line in said)
    stack.stop(timeout=5)
    time.sleep(0.3)
    assert stack.running == {} and stack.restarts == {"ingestion": 1}, "stopping is not exiting"
