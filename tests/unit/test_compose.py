"""docker-compose.yml describes the whole stack; no Docker engine runs here, so parse it."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aif.stack import SERVICES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_full_stack_with_health_checks(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "postgres", "redis", "triton", *SERVICES}
    for name, spec in services.items():
        assert spec.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_each_service_builds_its_own_dockerfile_and_ports_match(compose: dict) -> None:
    for name, (grpc_port, metrics_port) in SERVICES.items():
        spec = compose["services"][name]
        dockerfile = ROOT / spec["build"]["dockerfile"]
        assert dockerfile == ROOT / "services" / name / "Dockerfile" and dockerfile.exists()
        assert f"{grpc_port}:{grpc_port}" in spec["ports"]
        assert f"{metrics_port}:{metrics_port}" in spec["ports"]
        assert str(grpc_port) in " ".join(spec["healthcheck"]["test"])
        assert f"services.{name}" in dockerfile.read_text()
        assert spec["environment"]["AIF_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_docker_compose_config_accepts_it_when_available() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("docker compose client not installed (parsed by the tests above instead)")
    result = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
