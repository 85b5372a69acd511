"""Gateways the bench parts start as processes of their own (as deployed), one per variant."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spawn_gateway(env: Mapping[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    """``python -m services.gateway`` with exactly ``env``, its stderr in ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
