"""Onboarding a use case into a running factory, with no restart and no file on any service.

The seven services run as their own processes (aif.stack) on a real broker, with Triton,
starting with an empty catalogue (each says so in its health). ``aif usecase apply``
(the CLI, with a token scoped to the new use case) onboards a spec; then, in the same
processes: ingestion takes its raw topic, the feature store builds its features, the
registry takes a version of its model, the gateway serves it by entity id, and the
monitor joins its outcomes. A change of features is refused naming the field; a change
of deployment policy is applied live; ``aif usecase retire`` stops the serving.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from aif import infra
from aif.datagen import LoanStream, to_json
from aif.stack import SERVICES, Stack
from aifactory.common.v1 import common_pb2
from aifactory.evaluator.v1 import events_pb2 as evaluator_events
from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs.rpc.healthcheck import check
from libs.settings import ServiceSettings
from libs.usecase import DEFAULT_DIR, parse_usecase
from libs.usecase.catalogue import HEALTH_ANY, health_name
from tests.unit.registry.helpers import reference_doc, torchscript_model

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# Its own ports (see aif.stack: 11300 is between the hostile-topics and services stacks).
PORT_OFFSET = 11300
ROOT = Path(__file__).resolve().parents[2]


def _settings_class(name: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{name}.settings")
    return next(
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v.service == name
    )


def isolated(run: str) -> dict[str, str]:
    """Topics, groups and ids of this run only, on the shared broker; one catalogue topic."""
    env = {"AIF_USECASES_TOPIC": f"{run}.usecases"}
    for name in SERVICES:
        prefix = f"AIF_{name.upper()}_"
        for field, info in _settings_class(name).model_fields.items():
            if field.endswith("_topic") and isinstance(info.default, str) and info.default:
                if field != "usecases_topic":
                    env[prefix + field.upper()] = f"{run}.{info.default}"
            if field == "consumer_group":
                env[prefix + "CONSUMER_GROUP"] = f"{run}-{name}"
    env["AIF_INGESTION_RAW_TOPIC_PATTERN"] = f"{run}.{{use_case}}.raw"
    env["AIF_FEATURESTORE_APP_ID"] = f"{run}-featurestore"
    env["AIF_FEATURESTORE_FEAST_PROJECT"] = f"p{run}"
    env["AIF_GATEWAY_PREDLOG_FLUSH_MS"] = "100"
    return env


def wait_for(what: str, ok: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = ok()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def aif(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``aif`` command line, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "aif.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def factory(
    kafka: infra.KafkaHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, str]]:
    run = f"ob{uuid.uuid4().hex[:8]}"
    triton = infra.ensure_triton()
    stack = Stack(
        tmp_path_factory.mktemp("logs"),
        port_offset=PORT_OFFSET,
        data_root=tmp_path_factory.mktemp("state"),
        env={
            "AIF_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
            "AIF_GATEWAY_TRITON_URL": triton.grpc_url,
            "AIF_GATEWAY_TRITON_CONTROL_KEY": triton.control_key,
            **isolated(run),
        },
    )
    # Every topic exists before a consumer subscribes (a consumer learns of a topic created
    # later only at its next metadata refresh, minutes away).
    names = {v for k, v in stack.env.items() if k.endswith("_TOPIC") and k != "AIF_USECASES_TOPIC"}
    asyncio.run(create_topics(kafka.bootstrap_servers, names))
    stack.start(timeout=180)
    try:
        yield stack, run
    finally:
        stack.stop()


async def create_topics(bootstrap: str, names: set[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, 3, 1) for n in sorted(names)])
    finally:
        await admin.close()


def spec_file(tmp: Path, name: str, version: int = 1, **sections: dict[str, Any]) -> Path:
    data = yaml.safe_load((DEFAULT_DIR / "loan_approval.yaml").read_text())
    data["name"], data["version"] = name, version
    for key, value in sections.items():
        data[key] = {**data[key], **value}
    path = tmp / f"{name}-v{version}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def produce(bootstrap: str, topic: str, records: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in records:
            await producer.send(topic, value, headers=[("content-type", b"application/json")])
        await producer.flush()
    finally:
        await producer.stop()


def monitor_metrics(stack: Stack) -> str:
    port = stack.running["monitor"].metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()  # type: ignore[no-any-return]


def joined(stack: Stack, name: str) -> float:
    """The monitor's count of outcomes joined to predictions of use case ``name``."""
    pattern = re.compile(
        r'^(?:\w+_)?monitor_join_joined(?:_total)?\{[^}]*use_case="' + name + r'"[^}]*\}\s+(\S+)$'
    )
    return sum(
        float(m.group(1)) for line in monitor_metrics(stack).splitlines() if (m := pattern.match(line))
    )


def test_a_use_case_is_onboarded_served_monitored_changed_and_retired_without_a_restart(
    factory: tuple[Stack, str], kafka: infra.KafkaHandle, tmp_path: Path
) -> None:
    stack, run = factory
    pids = {name: svc.process.pid for name, svc in stack.running.items()}
    name = f"onboard_{run}"

    # An empty factory: every service says it knows no use case (health and logs).
    for svc in stack.running.values():
        assert not check(svc.target, HEALTH_ANY), svc.name
        assert "knows no use case yet" in svc.log_path.read_text(), svc.name

    # Onboarding is authorised per use case: an engineer of another use case is refused.
    path = spec_file(tmp_path, name)
    target = stack.target("registry")
    other = stack.auth.issue("mallory", {"loan_approval": ["ml-engineer"]})
    refused = aif("usecase", "apply", str(path), "--target", target, "--token", other)
    assert refused.returncode == 2 and "PERMISSION_DENIED" in refused.stderr, refused

    engineer = stack.auth.issue("eve", {name: ["ml-engineer"]})
    applied = aif("usecase", "apply", str(path), "--target", target, "--token", engineer, "--reason", "test")
    assert applied.returncode == 0, applied.stderr
    assert f"created   {name} v1" in applied.stdout
    stack.wait_usecases([name], timeout=180)  # every process took it up: health usecase/<name>
    listed = aif("usecase", "list", "--target", target, "--token", engineer)
    assert name in listed.stdout and "active" in listed.stdout, listed

    # Ingestion consumes its raw topic; the feature store builds its features (Feast view).
    stream = iter(LoanStream(seed=11))
    examples = [next(stream) for _ in range(40)]
    asyncio.run(produce(kafka.bootstrap_servers, f"{run}.{name}.raw", [to_json(e.record) for e in examples]))
    entity = examples[-1].entity_id
    admin = stack.metadata("onboarding-admin")
    with grpc.insecure_channel(stack.target("featurestore")) as channel:
        features = fs_grpc.FeatureStoreServiceStub(channel)

        def online() -> bool:
            reply = features.GetOnlineFeatures(
                fs_pb.GetOnlineFeaturesRequest(use_case=name, entity_ids=[entity]), metadata=admin, timeout=10
            )
            return bool(reply.rows) and reply.rows[0].found

        wait_for("features online", online)

    # A version of its model, made champion: the gateway loads it and serves it by entity id.
    uc = parse_usecase(path.read_text())
    with grpc.insecure_channel(target) as channel:
        registry = reg_grpc.RegistryServiceStub(channel)
        version = registry.RegisterModelVersion(
            reg_pb.RegisterModelVersionRequest(
                use_case=name,
                model_name=name,
                artifact_content=torchscript_model(uc),
                reference_profile_content=json.dumps(reference_doc(uc)).encode(),
            ),
            metadata=admin,
            timeout=60,
        ).model_version
        # Its evaluation passed: the registry promotes it by the spec's (auto) policy.
        promoted = registry.RecordEvaluation(
            reg_pb.RecordEvaluationRequest(
                evaluation=evaluator_events.ModelEvaluated(
                    report_id=f"report-{run}",
                    model=version.ref,
                    passed=True,
                    gates=[
                        evaluator_events.GateResult(
                            gate="metric_floor",
                            metric="auc",
                            value=0.9,
                            threshold=0.75,
                            passed=True,
                            comparator=">=",
                        )
                    ],
                )
            ),
            metadata=admin,
            timeout=30,
        )
        assert promoted.promoted
    app = stack.metadata("app", {name: ["app"]})
    with grpc.insecure_channel(stack.target("gateway")) as channel:
        gateway = gw_grpc.GatewayServiceStub(channel)

        def predict() -> gw_pb.Prediction | None:
            try:
                return gateway.Predict(  # type: ignore[no-any-return]
                    gw_pb.PredictRequest(use_case=name, entity_id=entity), metadata=app, timeout=10
                ).prediction
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):  # type: ignore[attr-defined]
                    return None  # loading
                raise

        prediction = wait_for("the gateway to serve the new use case", predict, timeout=180)
        assert prediction.model.use_case == name and prediction.model.version == version.ref.version

        # The monitor joins its outcomes (it monitors the use case, learnt while running).
        for example in examples[-10:]:
            p = gateway.Predict(
                gw_pb.PredictRequest(use_case=name, entity_id=example.entity_id), metadata=app, timeout=10
            ).prediction
            gateway.RecordFeedback(
                gw_pb.RecordFeedbackRequest(
                    prediction_id=p.prediction_id,
                    use_case=name,
                    outcome=common_pb2.Value(int64_value=int(example.label)),
                ),
                metadata=app,
                timeout=10,
            )
        try:
            wait_for("the monitor to join outcomes of the new use case", lambda: joined(stack, name) >= 1)
        except AssertionError:
            lines = [x for x in monitor_metrics(stack).splitlines() if "join" in x and not x.startswith("#")]
            raise AssertionError(f"no join counted; the monitor's join metrics: {lines}") from None

        # What needs a new model is refused naming the field; a policy change applies live.
        stale = spec_file(tmp_path, name, 2, features={"ttl": "7d"})
        refused = aif("usecase", "apply", str(stale), "--target", target, "--token", engineer)
        assert refused.returncode == 1 and "features.ttl" in refused.stderr, refused
        policy = spec_file(tmp_path, name, 2, deployment={"strategy": "shadow"}, drift={"psi_threshold": 0.3})
        changed = aif("usecase", "apply", str(policy), "--target", target, "--token", engineer)
        assert changed.returncode == 0 and "deployment.strategy" in changed.stdout, changed

        # Retired: the gateway stops serving it, every service says so in its health.
        approver = stack.auth.issue("ann", {name: ["approver"]})
        retired = aif(
            "usecase", "retire", name, "--reason", "test over", "--target", target, "--token", approver
        )
        assert retired.returncode == 0, retired.stderr

        def stopped() -> bool:
            try:
                gateway.Predict(
                    gw_pb.PredictRequest(use_case=name, entity_id=entity), metadata=app, timeout=10
                )
            except grpc.RpcError as exc:
                return exc.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined,no-any-return]
            return False

        wait_for("the gateway to stop serving the retired use case", stopped)
    wait_for(
        f"every service to report {name} retired",
        lambda: not any(check(s.target, health_name(name)) for s in stack.running.values()),
    )

    # All of it in the same processes: nothing was restarted.
    assert {n: svc.process.pid for n, svc in stack.running.items()} == pids
    assert all(svc.process.poll() is None for svc in stack.running.values())
