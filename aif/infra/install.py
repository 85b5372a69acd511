"""``python -m aif.infra install``: Debian packages, Kafka jars, Triton's python backend.

Idempotent: each step checks first and is skipped when already done.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from . import kafka, postgres, triton
from ._proc import InfraError
from .config import InfraConfig

# component -> [(binary that proves it is installed, Debian package providing it)]
APT: dict[str, list[tuple[str, str]]] = {
    "kafka": [("java", "openjdk-17-jre-headless"), ("mvn", "maven"), ("kcat", "kcat")],
    "postgres": [("postgres", "postgresql")],
    "redis": [("redis-server", "redis-server")],
    "triton": [],
    "kafka-secure": [("java", "openjdk-17-jre-headless"), ("mvn", "maven")],
}
POLICY_RC = Path("/usr/sbin/policy-rc.d")


def _has(binary: str) -> bool:
    if binary == "postgres":  # Debian keeps it off PATH, in /usr/lib/postgresql/<v>/bin
        return postgres.bin_dir() is not None
    return shutil.which(binary) is not None


def missing_packages(components: Iterable[str]) -> list[str]:
    return sorted({pkg for c in components for binary, pkg in APT[c] if not _has(binary)})


@contextlib.contextmanager
def _no_service_start() -> Iterator[None]:
    """Stops apt's postinst from starting a system redis/postgres on our ports.

    policy-rc.d exiting 101 is Debian's documented "don't start services" switch.
    """
    if POLICY_RC.exists():
        yield
        return
    POLICY_RC.write_text("#!/bin/sh\n# written by aif.infra install, removed after\nexit 101\n")
    POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC.unlink(missing_ok=True)


def apt_install(packages: list[str], echo: Callable[[str], None]) -> None:
    """apt-get update once, then install packages without prompts or recommends."""
    if os.geteuid() != 0:
        raise InfraError("install", f"need root to apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ]
    with _no_service_start():
        for argv in steps:
            echo(f"    $ {' '.join(argv)}")
            proc = subprocess.run(
                argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise InfraError(
                    "install", f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
                )


def install(config: InfraConfig, components: Iterable[str], echo: Callable[[str], None] = print) -> None:
    """Installs what the given components need; prints one line per step."""
    components = list(components)
    pkgs = missing_packages(components)
    if pkgs:
        echo(f"==> apt-get install {' '.join(pkgs)}")
        apt_install(pkgs, echo)
    else:
        echo("==> Debian packages: present")
    if {"kafka", "kafka-secure"} & set(components):
        echo(
            "==> Kafka jars: fetching with Maven (first time ~1 min)..."
            if not any(kafka.libs_dir(config).glob("kafka_2.13-*.jar"))
            else "==> Kafka jars: present"
        )
        kafka.install(config)
    if "triton" in components:
        copied = triton.install(config)
        echo(
            f"==> Triton python backend: {'copied to' if copied else 'present in'} "
            f"{triton.backends_dir(config)}"
        )
