"""A promotion under continuous load: the gateway follows AliasChanged on a real Kafka
topic, loads and warms the new version in Triton, switches, unloads the old one, and
not one request fails on the way."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient_aio
from google.protobuf.timestamp_pb2 import Timestamp

from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from aifactory.registry.v1 import events_pb2 as registry_events
from libs.bus import EventPublisher
from tests.gateway_support import RunningGateway, gateway_settings, shared_triton, start_gateway
from tests.integration.test_gateway import as_values, features, infer_input, row

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
async def gateway(kafka, new_topic) -> AsyncIterator[tuple[RunningGateway, str]]:  # type: ignore[no-untyped-def]
    triton = shared_triton()
    promoted = await new_topic("gw.promoted")
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        static_aliases="loan_approval:champion=1",
        model_promoted_topic=promoted,
        predictions_topic=await new_topic("gw.predictions"),
        feedback_topic=await new_topic("gw.feedback"),
    )
    gw = await start_gateway(settings)
    yield gw, promoted
    await gw.stop()


async def _promote(bootstrap: str, topic: str, version: int, old: int) -> None:
    now = Timestamp()
    now.GetCurrentTime()
    event = registry_events.AliasChanged(
        use_case="loan_approval",
        model_name="loan_approval",
        alias="champion",
        new_version=version,
        old_version=old,
        reason="test promotion",
        kind=registry_events.ALIAS_CHANGE_KIND_PROMOTE,
        changed_at=now,
    )
    async with EventPublisher(bootstrap, producer="registry") as publisher:
        await publisher.publish(topic, event, use_case="loan_approval", key="loan_approval")


async def test_promotion_under_load_fails_no_request(gateway: tuple[RunningGateway, str], kafka) -> None:  # type: ignore[no-untyped-def]
    gw, topic = gateway
    triton = shared_triton()
    x = row(features(3))[None, :].astype(np.float32)
    versions: Counter[str] = Counter()
    failures: list[str] = []
    stop = asyncio.Event()

    async def oip_load() -> None:
        client = grpcclient_aio.InferenceServerClient(gw.oip_url)
        try:
            while not stop.is_set():
                try:
                    version = (
                        (await client.infer("loan_approval", infer_input(x))).get_response().model_version
                    )
                    versions[f"oip:{version}"] += 1
                except Exception as exc:  # noqa: BLE001 - every failure is the test's finding
                    failures.append(f"oip: {exc}")
        finally:
            await client.close()

    async def business_load() -> None:
        async with grpc.aio.insecure_channel(gw.grpc_url) as channel:
            stub = gw_grpc.GatewayServiceStub(channel)
            request = gw_pb.PredictRequest(use_case="loan_approval", features=as_values(features(3)))
            while not stop.is_set():
                try:
                    version = (await stub.Predict(request)).prediction.model.version
                    versions[f"business:{version}"] += 1
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"business: {exc.code().name} {exc.details()}")

    workers = [asyncio.create_task(oip_load()) for _ in range(3)] + [asyncio.create_task(business_load())]
    try:
        await asyncio.sleep(1.0)
        await _promote(kafka.bootstrap_servers, topic, 2, 1)
        async with asyncio.timeout(120):
            while versions["oip:2"] < 200:
                await asyncio.sleep(0.1)
        await gw.service.models.wait_idle(60)  # the old version's unload is done too
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    print(f"requests by path and version during the promotion: {dict(versions)}; failed: {len(failures)}")
    assert failures == [], failures[:5]
    assert versions["oip:1"] > 0 and versions["oip:2"] >= 200 and versions["business:2"] > 0, versions
    # After the switch no request went to version 1 any more, and Triton unloaded it.
    served = gw.service.models.get("loan_approval").routing
    assert served is not None and served.champion == 2 and served.versions == {2}
    index = await _ready_versions(triton.grpc_url)
    assert index == {2}, index


def _control(url: str) -> dict[str, str]:
    """Triton's model-control header for the Triton at ``url`` (its repository index is restricted)."""
    from tests.gateway_support import control_key

    return {"triton-grpc-protocol-aif-control": control_key(url)}


async def _ready_versions(url: str) -> set[int]:
    client = grpcclient_aio.InferenceServerClient(url)
    try:
        async with asyncio.timeout(30):
            while True:
                index = await client.get_model_repository_index(as_json=True, headers=_control(url))
                ready = {
                    int(m["version"])
                    for m in index.get("models", [])
                    if m["name"] == "loan_approval" and m.get("state") == "READY"
                }
                states = {m.get("state") for m in index.get("models", []) if m["name"] == "loan_approval"}
                if "UNLOADING" not in states:
                    return ready
                await asyncio.sleep(0.2)
    finally:
        await client.close()
