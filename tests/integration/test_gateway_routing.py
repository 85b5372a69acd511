"""Traffic strategies through a real gateway, Triton and Kafka: canary share and
stickiness, and shadow scoring that is logged but never returned."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient_aio

from aifactory.gateway.v1 import events_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from tests.gateway_support import RunningGateway, gateway_settings, shared_triton, start_gateway, usecases_dir
from tests.integration.test_gateway import as_values, features, infer_input, read_events, row

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SHARE = 0.2
N_ENTITIES = 10_000


async def _gateway(tmp_path: Path, kafka, new_topic, strategy: str) -> tuple[RunningGateway, str]:  # type: ignore[no-untyped-def]
    triton = shared_triton()
    predictions = await new_topic("gw.predictions")
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        static_aliases="loan_approval:champion=1,loan_approval:challenger=2",
        predictions_topic=predictions,
        model_promoted_topic=await new_topic("gw.promoted"),
        feedback_topic=await new_topic("gw.feedback"),
    )
    return await start_gateway(settings, usecases_dir(tmp_path / "usecases", strategy, SHARE)), predictions


@pytest.fixture
async def canary(tmp_path, kafka, new_topic) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    gw, _ = await _gateway(tmp_path, kafka, new_topic, "canary")
    yield gw
    await gw.stop()


@pytest.fixture
async def shadow(tmp_path, kafka, new_topic) -> AsyncIterator[tuple[RunningGateway, str]]:  # type: ignore[no-untyped-def]
    gw, topic = await _gateway(tmp_path, kafka, new_topic, "shadow")
    yield gw, topic
    await gw.stop()


async def _versions(stub: gw_grpc.GatewayServiceStub, entities: list[str]) -> dict[str, int]:
    inline = as_values(features(1))
    out: dict[str, int] = {}
    for start in range(0, len(entities), 1000):
        chunk = entities[start : start + 1000]
        reply = await stub.PredictBatch(
            gw_pb.PredictBatchRequest(
                use_case="loan_approval",
                inputs=[gw_pb.PredictionInput(entity_id=e, features=inline) for e in chunk],
            )
        )
        for e, p in zip(chunk, reply.predictions, strict=True):
            assert not p.error, p.error
            out[e] = p.model.version
    return out


async def test_canary_share_is_within_tolerance_and_sticky_per_entity(canary: RunningGateway) -> None:
    entities = [f"applicant-{i}" for i in range(N_ENTITIES)]
    async with grpc.aio.insecure_channel(canary.grpc_url) as channel:
        stub = gw_grpc.GatewayServiceStub(channel)
        first = await _versions(stub, entities)
        again = await _versions(stub, entities[:2000])
    counts = Counter(first.values())
    assert set(counts) == {1, 2}
    sigma = math.sqrt(SHARE * (1 - SHARE) / N_ENTITIES)
    share = counts[2] / N_ENTITIES
    assert abs(share - SHARE) <= 3 * sigma, (
        f"challenger share {share:.4f}, expected {SHARE} ± {3 * sigma:.4f}"
    )
    assert all(again[e] == first[e] for e in again), "an entity switched version between requests"

    # The OIP path routes by the same stable hash (request parameter entity_id).
    client = grpcclient_aio.InferenceServerClient(canary.oip_url)
    try:
        x = row(features(1))[None, :].astype(np.float32)
        for e in entities[:30]:
            result = await client.infer("loan_approval", infer_input(x), parameters={"entity_id": e})
            assert int(result.get_response().model_version) == first[e]
    finally:
        await client.close()


async def test_shadow_never_changes_the_answer_but_is_logged(
    shadow: tuple[RunningGateway, str], kafka
) -> None:  # type: ignore[no-untyped-def]
    gw, topic = shadow
    triton = shared_triton()
    direct = grpcclient_aio.InferenceServerClient(triton.grpc_url)
    client = grpcclient_aio.InferenceServerClient(gw.oip_url)
    ids: list[str] = []
    try:
        async with grpc.aio.insecure_channel(gw.grpc_url) as channel:
            stub = gw_grpc.GatewayServiceStub(channel)
            for i in range(20):
                x = row(features(i))[None, :].astype(np.float32)
                champion = (await direct.infer("loan_approval", infer_input(x), model_version="1")).as_numpy(
                    "OUTPUT"
                )
                p = (
                    await stub.Predict(
                        gw_pb.PredictRequest(
                            use_case="loan_approval", entity_id=f"e{i}", features=as_values(features(i))
                        )
                    )
                ).prediction
                assert p.model.version == 1
                assert p.output.double_value == pytest.approx(float(champion[0, 1]), rel=1e-6)
                via_oip = await client.infer("loan_approval", infer_input(x), request_id=f"oip-shadow-{i}")
                assert via_oip.get_response().model_version == "1"
                np.testing.assert_allclose(via_oip.as_numpy("OUTPUT"), champion, rtol=1e-6)
                ids += [p.prediction_id, f"oip-shadow-{i}"]
    finally:
        await direct.close()
        await client.close()
    events = await read_events(kafka.bootstrap_servers, topic, events_pb2.PredictionLogged, 2 * len(ids))
    served = {e.prediction_id: e for e, _ in events if not e.shadow}
    shadowed = {e.prediction_id: e for e, _ in events if e.shadow}
    assert set(served) == set(ids) and set(shadowed) == set(ids)
    for pid in ids:
        assert served[pid].model.version == 1 and served[pid].alias == "champion"
        assert shadowed[pid].model.version == 2 and shadowed[pid].alias == "challenger"
        # Version 2 leans to class 1: its (logged, unreturned) answer differs.
        assert shadowed[pid].output.double_value > served[pid].output.double_value
        assert dict(shadowed[pid].features) == dict(served[pid].features)
