"""docker-compose.yml describes the whole stack, read here as YAML (the real Compose CLI
renders it in tests/integration/test_deploy_manifests.py): one image recipe, state in
volumes, PostgreSQL and Redis, each service mounting only its own credentials, Triton
kept off the host, and every AIF_ variable a setting of the service that gets it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aif.stack import CALLERS, SERVICES
from tests.deploy_checks import all_settings, callers, env_problems, settings_class

ROOT = Path(__file__).resolve().parents[2]
SQL = {"registry", "trainer", "evaluator", "monitor"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_full_stack_with_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "postgres", "redis", "triton", *SERVICES}
    for name, spec in services.items():
        assert spec.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_every_service_builds_from_the_one_recipe_with_its_ports(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        spec = compose["services"][name]
        build = spec["build"]
        assert build["dockerfile"] == "deploy/docker/Dockerfile" and build["args"] == {"SERVICE": name}
        assert (ROOT / build["dockerfile"]).is_file()
        assert (ROOT / "deploy" / "docker" / "requirements" / f"{name}.txt").is_file()
        defaults = settings_class(name).model_fields
        grpc_port, metrics_port = defaults["grpc_port"].default, defaults["metrics_port"].default
        assert f"127.0.0.1:{grpc_port}:{grpc_port}" in spec["ports"], name
        assert f"127.0.0.1:{metrics_port}:{metrics_port}" in spec["ports"], name
        assert f"127.0.0.1:{grpc_port}" in " ".join(spec["healthcheck"]["test"]), name
        assert spec["environment"]["AIF_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_state_in_volumes_of_its_own_postgres_and_redis(compose: dict[str, Any]) -> None:
    named = set(compose["volumes"])
    owners: dict[str, str] = {}
    for name in SERVICES:
        spec = compose["services"][name]
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source == f"./build/auth/services/{name}":
                continue  # its credentials, read-only (test_each_service_mounts_only_its_own_credentials)
            assert source in named, f"{name} mounts {source}, not a named volume"
            assert source not in owners, f"{name} and {owners.get(source)} share {source}"
            owners[source] = name
        env = spec["environment"]
        url = env.get(f"AIF_{name.upper()}_DATABASE_URL", "")
        if name in SQL:
            assert re.fullmatch(rf"postgresql\+psycopg://[^@]+@postgres:5432/{name}", url), (name, url)
            assert "postgres" in spec["depends_on"], name
        else:
            assert not url, name
    store = compose["services"]["featurestore"]["environment"]
    assert store["AIF_FEATURESTORE_ONLINE_STORE"] == "redis"
    assert store["AIF_FEATURESTORE_REDIS_URL"].startswith("redis://redis:")


def test_triton_is_not_published_and_has_torch(compose: dict[str, Any]) -> None:
    triton = compose["services"]["triton"]
    assert "ports" not in triton
    assert triton["build"]["target"] == "triton"
    assert "torch" in (ROOT / "deploy" / "docker" / "requirements" / "triton.txt").read_text()
    for name in ("postgres", "redis"):
        assert "ports" not in compose["services"][name], f"{name} is published on the host"


def test_each_service_mounts_only_its_own_credentials(compose: dict[str, Any]) -> None:
    """Each service mounts its own credentials folder read-only (what ``aif token service``
    mints: public keys, the revocation list, its token if it calls others): a folder, so a
    re-minted token or a new revocation reaches the running container."""
    assert set(CALLERS) == callers(), "aif.stack.CALLERS disagrees with the settings classes"
    assert "secrets" not in compose, "single-file secrets keep a rotated token's old inode"
    for name in SERVICES:
        spec = compose["services"][name]
        env = spec["environment"]
        auth = [v for v in spec.get("volumes", []) if "build/auth" in str(v)]
        assert auth == [f"./build/auth/services/{name}:/run/aif/auth:ro"], f"{name} mounts {auth}"
        assert env["AIF_AUTH_DIR"] == "/run/aif/auth"
        token_file = env.get(f"AIF_{name.upper()}_SERVICE_TOKEN_FILE")
        if name in CALLERS:
            assert token_file == "/run/aif/auth/token", name
        else:
            assert token_file is None, name
        assert not any(k.endswith("SERVICE_TOKEN") for k in env), f"{name}: a token value in its environment"


def test_every_aif_variable_is_a_setting_and_required_ones_are_set(compose: dict[str, Any]) -> None:
    problems = []
    for name in all_settings():
        problems += env_problems(name, compose["services"][name]["environment"], "docker-compose.yml")
    # The image's own defaults apply to every service.
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    image_vars = re.findall(r"\b(AIF_[A-Z_]+)=", dockerfile)
    assert image_vars
    for name in SERVICES:
        problems += [
            p for p in env_problems(name, image_vars, "deploy/docker/Dockerfile") if "needs" not in p
        ]
    assert not problems, "\n".join(problems)
