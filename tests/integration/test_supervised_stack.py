"""``aif up``'s runner: a service killed with -9 is restarted by supervisord (a new
process, SERVING again) within a bound; the environment it gets survives supervisord's
configuration syntax."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from configparser import RawConfigParser

import pytest
from supervisor.datatypes import dict_of_key_value_pairs

from aif.stack import Stack
from aif.stack.supervised import SupervisedStack
from libs.rpc.healthcheck import check

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

PORT_OFFSET = 13000  # see aif.stack for the offsets in use
# From kill -9 to SERVING again: supervisord notices at once; the registry starts in seconds.
BACK_WITHIN_S = 45.0


def test_program_environment_survives_supervisord_parsing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stack = Stack(
        tmp_path / "logs",
        env={"AIF_REGISTRY_ODD": 'a "quoted", 100% \\ value #1', "AIF_REGISTRY_ODD2": "it's"},
    )
    supervised = SupervisedStack(stack, tmp_path / "run", names=["registry"])
    parser = RawConfigParser()
    parser.read_string(supervised.config())
    raw = parser.get("program:registry", "environment").replace("%%", "%")
    env = dict_of_key_value_pairs(raw)
    assert env == stack.environment("registry")
    assert parser.get("program:registry", "autorestart") == "true"


@pytest.fixture(scope="module")
def supervised(kafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SupervisedStack]:  # type: ignore[no-untyped-def]
    state = tmp_path_factory.mktemp("state")
    stack = Stack(
        tmp_path_factory.mktemp("logs"),
        port_offset=PORT_OFFSET,
        data_root=state,
        env={"AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers, "AIF_REGISTRY_CONSUME": "false"},
    )
    running = SupervisedStack(stack, tmp_path_factory.mktemp("run"), names=["registry"])
    running.start(timeout=60)
    yield running
    assert running.stop() == 0


def test_a_killed_service_is_restarted_and_serving_again(supervised: SupervisedStack) -> None:
    target = supervised.target("registry")
    first = supervised.pid("registry")
    assert first and check(target)
    started = time.monotonic()
    os.kill(first, signal.SIGKILL)
    deadline = started + BACK_WITHIN_S
    while time.monotonic() < deadline:
        pid = supervised.pid("registry")
        if pid and pid != first and check(target, timeout=0.5):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"registry not back within {BACK_WITHIN_S:.0f}s; see {supervised.stack.log_dir}")
    print(f"registry back (pid {first} -> {pid}) in {time.monotonic() - started:.1f}s")
    assert supervised.rpc().supervisor.getProcessInfo("registry")["statename"] in {"STARTING", "RUNNING"}
