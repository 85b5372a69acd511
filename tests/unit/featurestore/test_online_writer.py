"""The online writer's child process does not outlive the service that spawned it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# A stand-in service: spawns a watcher child as the writer pool does (spawn), prints its pid.
SERVICE = f"""
import multiprocessing, os, sys, time
sys.path.insert(0, {str(ROOT)!r})
from services.featurestore.store import online_writer

child = multiprocessing.get_context("spawn").Process(
    target=online_writer._exit_with_parent, args=(os.getpid(), 0.05)
)
child.start()
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only its reaper is missing


def test_the_writer_process_exits_when_its_service_is_killed() -> None:
    service = subprocess.Popen([sys.executable, "-c", SERVICE], stdout=subprocess.PIPE)
    try:
        child = int(service.stdout.readline())  # type: ignore[union-attr]
        time.sleep(0.3)
        assert _alive(child), "the watcher must not exit while its service runs"
        service.kill()  # kill -9: the service cleans nothing up
        service.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), f"writer process {child} outlived its service"
    finally:
        service.kill()
        service.wait()
