"""Triton stopped and started under the gateway: calls fail fast with UNAVAILABLE while it
is down, and serving resumes by itself (models loaded again) once it is back.

Runs on a Triton of its own (other ports, own infra dir), never the shared one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from libs.usecase import load_default
from tests.gateway_support import RunningGateway, export_version, gateway_settings, own_triton, start_gateway
from tests.integration.test_gateway import as_values, features, row

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

FAST_MS = 100


@pytest.fixture(scope="module")
def triton() -> Iterator:  # type: ignore[type-arg]
    handle = own_triton("triton-outage", 28481)
    export_version(handle.model_repository, load_default()["loan_approval"], 1)
    yield handle
    handle.stop()


@pytest.fixture
async def gateway(triton, kafka, new_topic) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        static_aliases="loan_approval:champion=1",
        predictions_topic=await new_topic("gw.predictions"),
        model_promoted_topic=await new_topic("gw.promoted"),
    )
    gw = await start_gateway(settings)
    yield gw
    await gw.stop()


def _request() -> bytes:
    req = service_pb2.ModelInferRequest(model_name="loan_approval")
    tensor = req.inputs.add(name="INPUT", datatype="FP32", shape=[1, 25])
    del tensor  # filled in place
    req.raw_input_contents.append(row(features(1)).astype(np.float32).tobytes())
    return req.SerializeToString()


async def test_triton_down_is_unavailable_fast_then_serving_resumes(gateway: RunningGateway, triton) -> None:  # type: ignore[no-untyped-def]
    request = _request()
    async with (
        grpc.aio.insecure_channel(gateway.oip_url) as oip,
        grpc.aio.insecure_channel(gateway.grpc_url) as business,
    ):
        infer = oip.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        stub = gw_grpc.GatewayServiceStub(business)
        predict = gw_pb.PredictRequest(use_case="loan_approval", features=as_values(features(1)))
        await infer(request)
        await stub.Predict(predict)

        await asyncio.to_thread(triton.stop_server)
        codes: list[grpc.StatusCode] = []
        slowest = 0.0
        for i in range(40):
            started = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                if i % 2:
                    await stub.Predict(predict, timeout=5)
                else:
                    await infer(request, timeout=5)
            slowest = max(slowest, time.perf_counter() - started)
            codes.append(err.value.code())
            await asyncio.sleep(0.01)
        assert set(codes) == {grpc.StatusCode.UNAVAILABLE}, codes
        assert slowest * 1000 < FAST_MS, f"slowest failure took {slowest * 1000:.1f} ms"
        assert not gateway.service.triton.up  # the circuit is open

        await asyncio.to_thread(triton.start_server)
        started = time.perf_counter()
        async with asyncio.timeout(90):
            while True:
                try:
                    await infer(request, timeout=5)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc
                    await asyncio.sleep(0.1)
        recovered = time.perf_counter() - started
        reply = await stub.Predict(predict)
        assert reply.prediction.model.version == 1
        print(
            f"slowest UNAVAILABLE {slowest * 1000:.1f} ms; serving again {recovered:.1f} s after Triton started"
        )
