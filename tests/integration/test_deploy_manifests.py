"""The deployment manifests, rendered by the real tools `make setup` builds from the Go
module proxy into build/tools/bin: `docker-compose config` (Compose v2) and `helm
template` / `helm lint` (Helm 3), every rendered Kubernetes object validated against the
Kubernetes API schemas (kubernetes-validate), and every AIF_ variable either sets checked
against the settings classes read now. A missing tool fails the test (run `make setup`)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aif.stack import SERVICES
from libs.auth import DevAuth
from libs.auth.dev import TOKEN_FILE
from tests.deploy_checks import ROOT, all_settings, callers, env_problems, tool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CHART = ROOT / "deploy" / "helm" / "aifactory"
KUBE_VERSION = "1.33.0"
SQL = ("registry", "trainer", "evaluator", "monitor")
CONTROL_KEY = "test-control-key"
TRITON_CONTROL = "aif-triton-control"
# Triton's model-control protocols, as the local infra restricts them.
RESTRICTED = "model-repository,model-config,statistics,shared-memory,trace,logging"


def gateway_http_port() -> int:
    """The gateway's HTTP/JSON port by default: its gRPC port + 20 (services/gateway/settings.py)."""
    settings = all_settings()["gateway"]
    assert settings.model_fields["http_port"].default is None  # unset: derived from grpc_port
    return int(settings.model_fields["grpc_port"].default) + 20


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> DevAuth:
    """An issuer's folder and every service's own folder, as `aif token service` makes them."""
    auth = DevAuth(tmp_path_factory.mktemp("auth")).ensure()
    for name in SERVICES:
        auth.mint_service(name, {"*": [f"svc-{name}"]} if name in callers() else None)
    return auth


# --- Compose --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered_compose() -> dict[str, Any]:
    compose = tool("docker-compose")
    env = {**os.environ, "AIF_PRIVACY_SALT": "test-salt", "AIF_TRITON_CONTROL_KEY": "test-key"}
    proc = subprocess.run(
        [str(compose), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_compose_cli_accepts_the_file_and_demands_the_privacy_salt() -> None:
    compose = tool("docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "AIF_PRIVACY_SALT"} | {"AIF_TRITON_CONTROL_KEY": "k"}
    proc = subprocess.run(
        [str(compose), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode != 0 and "AIF_PRIVACY_SALT" in proc.stderr


def test_compose_renders_services_from_one_recipe_with_their_own_secrets(
    rendered_compose: dict[str, Any],
) -> None:
    services = rendered_compose["services"]
    assert "ports" not in services["triton"]
    for name in SERVICES:
        spec = services[name]
        assert Path(spec["build"]["dockerfile"]).name == "Dockerfile"
        assert spec["build"]["args"]["SERVICE"] == name
        # Its own credentials folder only (minted by `aif token service`), read-only.
        auth = [v for v in spec.get("volumes", []) if "/run/aif/auth" in str(v)]
        assert len(auth) == 1 and auth[0]["read_only"], (name, auth)
        assert Path(auth[0]["source"]).parts[-2:] == ("services", name), (name, auth)
        assert ("/run/aif/auth/token" in str(spec["environment"])) == (name in callers()), name


def test_compose_variables_are_settings_of_their_service(rendered_compose: dict[str, Any]) -> None:
    problems = []
    for name in all_settings():
        env = rendered_compose["services"][name].get("environment") or {}
        problems += env_problems(name, env, "docker-compose config")
    assert not problems, "\n".join(problems)


# --- Helm -----------------------------------------------------------------------------


def helm_args(auth: DevAuth, *extra: str) -> list[str]:
    args = ["--set-file", f"auth.publicKey={auth.public_key}", "--set", "privacy.salt=test-salt"]
    args += ["--set", f"triton.controlKey={CONTROL_KEY}"]
    for name in sorted(callers()):
        args += ["--set-file", f"auth.tokens.{name}={auth.service_dir(name) / TOKEN_FILE}"]
    for name in SQL:
        args += ["--set", f"postgresql.urls.{name}=postgresql+psycopg://{name}:pw@postgres:5432/{name}"]
    return [*args, *extra]


def helm_template(auth: DevAuth, *extra: str) -> list[dict[str, Any]]:
    helm = tool("helm")
    proc = subprocess.run(
        [str(helm), "template", "aif", str(CHART), "--kube-version", KUBE_VERSION, *helm_args(auth, *extra)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def chart(credentials: DevAuth) -> Iterator[list[dict[str, Any]]]:
    yield helm_template(credentials)


def _objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_helm_lint_passes(credentials: DevAuth) -> None:
    proc = subprocess.run(
        [
            str(tool("helm")),
            "lint",
            "--strict",
            str(CHART),
            "--kube-version",
            KUBE_VERSION,
            *helm_args(credentials),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(credentials: DevAuth) -> None:
    for docs in (
        helm_template(credentials),
        helm_template(credentials, "--set", "kafka.strimzi.enabled=true"),
    ):
        for doc in docs:
            if doc["apiVersion"].startswith("kafka.strimzi.io/"):
                continue  # a custom resource: no schema in the Kubernetes API
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_a_workload_service_and_grpc_probes_per_service(chart: list[dict[str, Any]]) -> None:
    services = _objects(chart, "Service")
    workloads = {**_objects(chart, "Deployment"), **_objects(chart, "StatefulSet")}
    for name in SERVICES:
        assert f"aif-{name}" in services and f"aif-{name}" in workloads, name
        pod = workloads[f"aif-{name}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        grpc_port = all_settings()[name].model_fields["grpc_port"].default
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == grpc_port, (name, probe)
        assert container["resources"]["requests"] and container["resources"]["limits"], name
        assert pod["securityContext"]["runAsNonRoot"] is True
    assert services["aif-triton"]["spec"]["type"] == "ClusterIP"
    # Files of their own: a StatefulSet each, with a volume per replica.
    stateful = _objects(chart, "StatefulSet")
    assert set(stateful) == {"aif-ingestion", "aif-featurestore", "aif-registry", "aif-gateway"}
    for spec in stateful.values():
        assert spec["spec"]["volumeClaimTemplates"]


def test_each_service_gets_only_its_own_secret(chart: list[dict[str, Any]], credentials: DevAuth) -> None:
    secrets = _objects(chart, "Secret")
    workloads = {**_objects(chart, "Deployment"), **_objects(chart, "StatefulSet")}
    for name in SERVICES:
        pod = workloads[f"aif-{name}"]["spec"]["template"]["spec"]
        (credentials_volume,) = [v for v in pod["volumes"] if v["name"] == "credentials"]
        sources = credentials_volume["projected"]["sources"]
        paths = {item["path"] for s in sources for item in next(iter(s.values()))["items"]}
        mounted_secrets = {s["secret"]["name"] for s in sources if "secret" in s}
        env_secrets = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in pod["containers"][0]["env"]
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
        }
        # Triton's model-control key: the gateway's alone among the services.
        shared = {"aif-privacy"} | ({TRITON_CONTROL} if name == "gateway" else set())
        assert mounted_secrets | env_secrets <= {f"aif-{name}"} | shared, name
        if name in callers():
            assert paths == {"jwt_public.pem", "revoked.txt", "token"}, name
            token = (credentials.service_dir(name) / TOKEN_FILE).read_text()
            assert secrets[f"aif-{name}"]["stringData"]["token"] == token
        else:
            assert paths == {"jwt_public.pem", "revoked.txt"}, name
        if name in SQL:
            assert secrets[f"aif-{name}"]["stringData"]["database-url"].endswith(f"/{name}")
    for secret in secrets.values():
        assert "PRIVATE KEY" not in json.dumps(secret), secret["metadata"]["name"]


def test_kafka_from_bootstrap_or_strimzi(credentials: DevAuth) -> None:
    def bootstraps(docs: list[dict[str, Any]]) -> set[str]:
        return {
            e["value"]
            for d in docs
            if d["kind"] in ("Deployment", "StatefulSet")
            for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])
            if e["name"] == "AIF_KAFKA_BOOTSTRAP"
        }

    assert bootstraps(helm_template(credentials, "--set", "kafka.bootstrap=broker.kafka:9092")) == {
        "broker.kafka:9092"
    }
    strimzi = helm_template(credentials, "--set", "kafka.strimzi.enabled=true")
    assert {d["kind"] for d in strimzi if d["apiVersion"].startswith("kafka.strimzi.io/")} == {
        "Kafka",
        "KafkaNodePool",
    }
    assert bootstraps(strimzi) == {"aif-kafka-bootstrap:9092"}


def test_chart_variables_are_settings_of_their_service(chart: list[dict[str, Any]]) -> None:
    workloads = {**_objects(chart, "Deployment"), **_objects(chart, "StatefulSet")}
    problems = []
    for name in all_settings():
        env = workloads[f"aif-{name}"]["spec"]["template"]["spec"]["containers"][0]["env"]
        problems += env_problems(name, [e["name"] for e in env], "helm template")
    assert not problems, "\n".join(problems)


# --- Triton's model control, the gateway's HTTP port -------------------------------------


def _secret_refs(workload: dict[str, Any]) -> dict[str, str]:
    """env name → Secret name of each variable a workload's first container reads from one."""
    env = workload["spec"]["template"]["spec"]["containers"][0].get("env", [])
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in env
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }


def test_triton_model_control_needs_a_key_only_triton_and_the_gateway_hold(
    chart: list[dict[str, Any]], credentials: DevAuth
) -> None:
    secrets = _objects(chart, "Secret")
    assert secrets[TRITON_CONTROL]["stringData"]["control-key"] == CONTROL_KEY
    workloads = {**_objects(chart, "Deployment"), **_objects(chart, "StatefulSet")}
    triton = workloads["aif-triton"]["spec"]["template"]["spec"]["containers"][0]
    assert "--model-control-mode=explicit" in triton["args"]
    for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
        assert f"{flag}={RESTRICTED}:aif-control=$(AIF_TRITON_CONTROL_KEY)" in triton["args"], flag
    assert _secret_refs(workloads["aif-triton"]) == {"AIF_TRITON_CONTROL_KEY": TRITON_CONTROL}
    assert _secret_refs(workloads["aif-gateway"])["AIF_GATEWAY_TRITON_CONTROL_KEY"] == TRITON_CONTROL
    holders = {
        name
        for name, w in workloads.items()
        if TRITON_CONTROL in _secret_refs(w).values() or TRITON_CONTROL in json.dumps(w["spec"]["template"])
    }
    assert holders == {"aif-triton", "aif-gateway"}
    # No key, no chart: an unrestricted Triton would load any caller's model code.
    proc = subprocess.run(
        [
            str(tool("helm")),
            "template",
            "aif",
            str(CHART),
            "--kube-version",
            KUBE_VERSION,
            *helm_args(credentials, "--set", "triton.controlKey="),  # the later --set wins
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "triton.controlKey is required" in proc.stderr
    # An existing Secret instead: referenced by both, none rendered.
    existing = helm_template(credentials, "--set", "triton.existingControlKeySecret=my-triton-key")
    assert TRITON_CONTROL not in _objects(existing, "Secret")
    workloads = {**_objects(existing, "Deployment"), **_objects(existing, "StatefulSet")}
    assert _secret_refs(workloads["aif-triton"])["AIF_TRITON_CONTROL_KEY"] == "my-triton-key"
    assert _secret_refs(workloads["aif-gateway"])["AIF_GATEWAY_TRITON_CONTROL_KEY"] == "my-triton-key"


def test_compose_triton_is_restricted_and_only_the_gateway_has_its_key(
    rendered_compose: dict[str, Any],
) -> None:
    services = rendered_compose["services"]
    command = services["triton"]["command"]
    for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
        assert f"{flag}={RESTRICTED}:aif-control=test-key" in command, flag
    holders = {name for name, spec in services.items() if "test-key" in json.dumps(spec)}
    assert holders == {"triton", "gateway"}
    assert services["gateway"]["environment"]["AIF_GATEWAY_TRITON_CONTROL_KEY"] == "test-key"


def test_the_gateway_http_port_is_served(
    chart: list[dict[str, Any]], rendered_compose: dict[str, Any]
) -> None:
    port = gateway_http_port()
    assert port == 50076
    service = _objects(chart, "Service")["aif-gateway"]
    assert {"name": "http", "port": port, "targetPort": "http", "appProtocol": "http"} in service["spec"][
        "ports"
    ]
    gateway = _objects(chart, "StatefulSet")["aif-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "http", "containerPort": port} in gateway["ports"]
    assert {"name": "AIF_GATEWAY_HTTP_PORT", "value": str(port)} in gateway["env"]
    published = {(p["target"], p.get("published")) for p in rendered_compose["services"]["gateway"]["ports"]}
    assert (port, str(port)) in published
