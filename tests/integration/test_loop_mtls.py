"""The closed loop with mutual TLS between every caller and every service.

A fresh factory (its own Kafka and Triton, the seven services as separate processes) with
``tls=True`` (what ``AIF_STACK_TLS=mtls`` does): a development CA, a certificate per
service, every gRPC port requiring a client certificate from that CA, and every internal
client (trainer → feature store and registry, evaluator → feature store and registry,
registry → evaluator and monitor, gateway → registry and feature store, monitor →
registry) speaking mutual TLS with its own certificate. The loop driver is an outside
app with a certificate of its own. A shorter run than tests/e2e/test_loop.py: any
internal call left in plaintext is refused by the service it calls, and the loop does
not close.

Kafka is the secure profile (``kafka_sasl=True``): SASL_SSL only, each service its own
SCRAM principal with the ACLs of libs.auth.kafka_acls (deny by default), no service
allowed PLAINTEXT; the driver writes records as ``producer.loan_approval`` and past
outcomes as the outcome feed. A service client missing an ACL fails its start or leaves
its part of the loop undone, so the loop closing shows the table is enough.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aif.loop import LoopConfig, LoopDriver, LoopResult, report
from aif.loop.factory import Factory, fresh_factory
from aif.stack import SERVICES
from libs.auth.tls import DevPki
from libs.bus import topics
from libs.rpc import ClientTls, blocking_channel
from tests.security.kafka_support import write

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2] / "build" / "e2e-loop-mtls"
# The bench's smoke loop: enough labelled data after the onset for the drift job, no more.
CONFIG = LoopConfig(bootstrap=2_000, stationary=400, recovery=400, max_after_onset=20_000, timeout_s=600)


@pytest.fixture(scope="module")
def factory() -> Iterator[Factory]:
    with fresh_factory(
        ROOT, kafka_port=27092, triton_port=27000, service_offset=13200, tls=True, kafka_sasl=True
    ) as factory:
        yield factory


@pytest.fixture(scope="module")
def result(factory: Factory) -> LoopResult:
    started = time.monotonic()

    async def drive() -> LoopResult:
        async with LoopDriver(
            factory.kafka.bootstrap_servers,
            factory.targets(),
            factory.stack.metadata("e2e-operator"),
            CONFIG,
            tls=factory.stack.client_tls("e2e-operator"),
            kafka=factory.loop_kafka(CONFIG.use_case),
        ) as driver:
            return await driver.run()

    outcome = asyncio.run(drive())
    print(
        f"[mtls] loop run took {time.monotonic() - started:.0f}s",
        report.timeline(outcome),
        report.quality_table(outcome),
        report.summary(outcome),
        sep="\n\n",
    )
    return outcome


def _health(
    target: str, tls: ClientTls | None, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.StatusCode:
    with blocking_channel(target, tls) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), metadata=metadata, timeout=5
            )
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return (
        grpc.StatusCode.OK
        if reply.status == health_pb2.HealthCheckResponse.SERVING
        else grpc.StatusCode.UNKNOWN
    )


def test_every_service_refuses_plaintext_and_certificates_from_another_ca(
    factory: Factory, tmp_path: Path
) -> None:
    stack = factory.stack
    own = stack.client_tls()
    assert own is not None
    rogue = DevPki(tmp_path / "rogue").ensure().client("e2e-operator")
    admin = stack.metadata("e2e-attacker")
    targets = {name: stack.target(name) for name in SERVICES}
    targets["gateway-oip"] = f"127.0.0.1:{stack.ports('gateway')[0] + 10}"
    for name, target in targets.items():
        for who, tls in (("plaintext", None), ("another CA", ClientTls(own.ca, rogue.cert, rogue.key))):
            assert _health(target, tls, admin) == grpc.StatusCode.UNAVAILABLE, (name, who)
        if name != "gateway-oip":  # no health service there
            assert _health(target, own) == grpc.StatusCode.OK, name
    for name in SERVICES:
        assert "(mutual TLS)" in (stack.log_dir / f"{name}.log").read_text(), name


def test_the_loop_closes_with_mutual_tls_between_all_services(result: LoopResult) -> None:
    assert result.false_alarms == 0
    assert result.detected_at_index is not None, "the monitor never reported the drift"
    assert result.v2 is not None and result.v2 > result.v1
    assert result.serving_after_s is not None
    assert result.causal and result.closed
    assert result.audit_valid


def test_lineage_reaches_the_prediction_over_mutual_tls(result: LoopResult) -> None:
    lineage = result.lineage
    assert lineage is not None
    assert lineage.model_version.ref.version == result.v2
    assert lineage.model_version.drift_report_id == result.drift_report_id


def _process_env(pid: int) -> dict[str, str]:
    """What a running process was started with (Linux)."""
    pairs = (item.partition(b"=") for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if item)
    return {key.decode(): value.decode(errors="replace") for key, _, value in pairs}


def test_every_service_is_on_sasl_ssl_as_its_own_principal_with_no_plaintext_allowed(
    factory: Factory,
) -> None:
    secure = factory.secure_kafka
    assert secure is not None
    passwords = secure.secure.credentials()
    assert len({passwords[name] for name in SERVICES}) == len(SERVICES)
    for name, svc in factory.stack.running.items():
        env = _process_env(svc.process.pid)
        assert "AIF_KAFKA_ALLOW_PLAINTEXT" not in env, name
        assert env["AIF_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["AIF_KAFKA_BOOTSTRAP"] == secure.bootstrap_servers, name
        assert env[f"AIF_{name.upper()}_KAFKA_USERNAME"] == name, name
        # Its own password, nobody else's: no other service's login in its environment.
        assert env[f"AIF_{name.upper()}_KAFKA_PASSWORD"] == passwords[name], name
        leaked = [other for other in SERVICES if other != name and passwords[other] in env.values()]
        assert not leaked, (name, leaked)


def test_a_service_principal_is_refused_a_topic_it_has_no_acl_for(factory: Factory) -> None:
    secure = factory.secure_kafka
    assert secure is not None
    raw = topics.raw(CONFIG.use_case)
    # The gateway writes predictions and feedback; a raw topic is its producer's alone. The
    # login itself succeeds (a wrong password raises, it does not return False): the
    # broker refuses the topic.
    assert not asyncio.run(write(secure.bootstrap_servers, secure.security("gateway"), raw))
