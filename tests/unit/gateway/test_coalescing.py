"""Row coalescing in the Triton client: concurrent rows share one call, answers split back."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from services.gateway.triton import Output, Rows, Triton, encode_request
from tests.unit.gateway.test_models import FakeRpcError

WIDTH = 3


class FakeInfer:
    """Answers OUTPUT = [sum(row), row[0]] per row, after a pause, counting calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    async def __call__(self, request: bytes, timeout: float | None = None) -> bytes:
        req = service_pb2.ModelInferRequest.FromString(request)
        rows = req.inputs[0].shape[0]
        self.calls.append(rows)
        await asyncio.sleep(0.01)
        if self.fail:
            raise FakeRpcError(grpc.StatusCode.INTERNAL, "boom")
        x = np.frombuffer(req.raw_input_contents[0], dtype=np.float32).reshape(rows, WIDTH)
        out = np.stack([x.sum(axis=1), x[:, 0]], axis=1).astype(np.float32)
        resp = service_pb2.ModelInferResponse(
            model_name=req.model_name, model_version=req.model_version, id=req.id
        )
        resp.outputs.add(name="OUTPUT", datatype="FP32", shape=[rows, 2])
        resp.raw_output_contents.append(out.tobytes())
        return resp.SerializeToString()


def triton(fake: FakeInfer, inflight: int = 1, max_rows: int = 256) -> Triton:
    t = Triton("127.0.0.1:1", coalesce_inflight=inflight, coalesce_max_rows=max_rows)
    t._infer = fake  # type: ignore[assignment]
    return t


def rows(k: int, n: int = 1) -> np.ndarray:
    return np.full((n, WIDTH), float(k), dtype=np.float32)


async def test_concurrent_rows_share_one_call_and_get_their_own_answers() -> None:
    fake = FakeInfer()
    t = triton(fake)
    results = await asyncio.gather(
        *(t.submit("m", "1", Rows(rows(k, 1 + k % 2).tobytes(), 1 + k % 2), WIDTH) for k in range(8))
    )
    assert fake.calls[0] == 1 and len(fake.calls) == 2 and sum(fake.calls) == 12
    for k, out in enumerate(results):
        assert isinstance(out, Output) and out.model_version == "1"
        np.testing.assert_allclose(out.values, np.tile([3.0 * k, k], (1 + k % 2, 1)))
    await t.close()


async def test_oip_requests_get_rebuilt_replies_with_their_ids() -> None:
    fake = FakeInfer()
    t = triton(fake)
    items = [
        Rows(
            rows(k, 2).tobytes(),
            2,
            encode_request("m", "4", rows(k, 2).tobytes(), 2, WIDTH, request_id=f"id{k}"),
            f"id{k}",
        )
        for k in range(5)
    ]
    replies = await asyncio.gather(*(t.submit("m", "4", item, WIDTH) for item in items))
    assert len(fake.calls) == 2
    for k, raw in enumerate(replies):
        resp = service_pb2.ModelInferResponse.FromString(raw)
        assert resp.id == f"id{k}" and resp.model_version == "4" and list(resp.outputs[0].shape) == [2, 2]
        np.testing.assert_allclose(
            np.frombuffer(resp.raw_output_contents[0], dtype=np.float32), [3.0 * k, k, 3.0 * k, k]
        )
    await t.close()


async def test_max_rows_bounds_a_coalesced_call_and_zero_turns_it_off() -> None:
    fake = FakeInfer()
    t = triton(fake, max_rows=4)
    await asyncio.gather(
        *(t.submit("m", "1", Rows(rows(k).tobytes(), 1), WIDTH, max_rows=3) for k in range(10))
    )
    assert max(fake.calls) <= 3 and sum(fake.calls) == 10
    off = FakeInfer()
    t2 = triton(off, inflight=0)
    await asyncio.gather(*(t2.submit("m", "1", Rows(rows(k).tobytes(), 1), WIDTH) for k in range(6)))
    assert off.calls == [1] * 6
    await t.close()
    await t2.close()


async def test_a_failed_coalesced_call_fails_every_waiting_caller() -> None:
    fake = FakeInfer(fail=True)
    t = triton(fake)
    results = await asyncio.gather(
        *(t.submit("m", "1", Rows(rows(k).tobytes(), 1), WIDTH) for k in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, grpc.aio.AioRpcError) for r in results)
    await t.close()


async def test_open_circuit_fails_at_once() -> None:
    from services.gateway.triton import TritonUnavailable

    t = triton(FakeInfer())
    t.up = False
    with pytest.raises(TritonUnavailable):
        await t.submit("m", "1", Rows(rows(1).tobytes(), 1), WIDTH)
    await t.close()
