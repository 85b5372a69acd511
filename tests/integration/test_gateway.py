"""The gateway on a real Triton and Kafka: the Open Inference Protocol (tritonclient),
the business API, the prediction log and feedback.

Triton is the gateway tests' own (its own ports and model repository, see
``tests.gateway_support``); model versions are exported with the registry's exporter.
Features by entity id come from a stub FeatureStoreService served over real gRPC.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio
from aiokafka import AIOKafkaConsumer
from tritonclient.utils import InferenceServerException

from aifactory.common.v1 import common_pb2
from aifactory.featurestore.v1 import featurestore_service_pb2 as fs_pb
from aifactory.featurestore.v1 import featurestore_service_pb2_grpc as fs_grpc
from aifactory.gateway.v1 import events_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from libs.usecase import UseCase, load_default
from tests.gateway_support import RunningGateway, gateway_settings, shared_triton, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

UC: UseCase = load_default()["loan_approval"]
WIDTH = len(UC.model_inputs())


def features(i: int) -> dict[str, float | int]:
    """Inline features of applicant ``i``; one-hot features as raw categories."""
    rng = np.random.default_rng(i)
    salary = float(rng.uniform(20_000, 150_000))
    loan = float(rng.uniform(0, 500_000))
    return {
        "salary": salary,
        "commission": float(rng.uniform(0, 75_000)),
        "age": int(rng.integers(20, 80)),
        "elevel": int(rng.integers(0, 5)),
        "car": int(rng.integers(1, 21)),
        "zipcode": int(rng.integers(0, 9)),
        "hvalue": float(rng.uniform(0, 900_000)),
        "hyears": int(rng.integers(1, 31)),
        "loan": loan,
        "loan_to_salary": loan / salary,
        "applications_10m": int(rng.integers(0, 5)),
        "loan_mean_10m": loan,
        "loan_max_10m": loan,
    }


def as_values(feats: Mapping[str, float | int | str]) -> dict[str, common_pb2.Value]:
    from services.gateway.inputs import to_value

    return {k: to_value(v) for k, v in feats.items()}


def row(feats: Mapping[str, float | int]) -> np.ndarray:
    from services.gateway.inputs import InputSchema

    return InputSchema(UC).row(feats)


class StubFeatureStore(fs_grpc.FeatureStoreServiceServicer):
    """Online features of applicants "a<i>" (expanded one-hot columns, as the store serves them)."""

    def __init__(self) -> None:
        self.calls = 0

    async def GetOnlineFeatures(
        self, request: fs_pb.GetOnlineFeaturesRequest, context
    ) -> fs_pb.GetOnlineFeaturesResponse:  # type: ignore[no-untyped-def]
        self.calls += 1
        reply = fs_pb.GetOnlineFeaturesResponse()
        for entity in request.entity_ids:
            out = reply.rows.add(entity_id=entity)
            if not entity.startswith("a"):
                continue
            out.found = True
            values = row(features(int(entity[1:])))
            for name, value in zip(UC.model_inputs(), values.tolist(), strict=True):
                out.values[name].double_value = value
        return reply


@pytest.fixture(scope="module")
def triton():  # type: ignore[no-untyped-def]
    return shared_triton()


@pytest.fixture
async def feature_store() -> AsyncIterator[tuple[str, StubFeatureStore]]:
    server = grpc.aio.server()
    stub = StubFeatureStore()
    fs_grpc.add_FeatureStoreServiceServicer_to_server(stub, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", stub
    await server.stop(0)


@pytest.fixture
async def topics(new_topic) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "predictions_topic": await new_topic("gw.predictions"),
        "feedback_topic": await new_topic("gw.feedback"),
        "model_promoted_topic": await new_topic("gw.promoted"),
    }


@pytest.fixture
async def gateway(triton, kafka, topics, feature_store) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        static_aliases="loan_approval:champion=1",
        featurestore_target=feature_store[0],
        **topics,
    )
    gw = await start_gateway(settings)
    yield gw
    await gw.stop()


async def read_events(bootstrap: str, topic: str, cls, n: int, timeout: float = 20) -> list:  # type: ignore[no-untyped-def]
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list = []
    try:
        async with asyncio.timeout(timeout):
            while len(out) < n:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for record in batch:
                        headers = dict(record.headers)
                        out.append((cls.FromString(record.value), headers))
    finally:
        await consumer.stop()
    return out


def infer_input(x: np.ndarray) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return [tensor]


async def test_tritonclient_speaks_to_the_gateway_as_to_triton(gateway: RunningGateway, triton) -> None:  # type: ignore[no-untyped-def]
    x = np.stack([row(features(i)) for i in range(3)]).astype(np.float32)

    def client_side() -> dict[str, Any]:
        gw = grpcclient.InferenceServerClient(gateway.oip_url)
        direct = grpcclient.InferenceServerClient(triton.grpc_url)
        try:
            out: dict[str, Any] = {
                "live": gw.is_server_live(),
                "ready": gw.is_server_ready(),
                "model_ready": gw.is_model_ready("loan_approval"),
                "metadata": gw.get_model_metadata("loan_approval", as_json=True),
                "config": gw.get_model_config("loan_approval", as_json=True)["config"],
                "server": gw.get_server_metadata(as_json=True),
            }
            result = gw.infer("loan_approval", infer_input(x))
            out["gw"] = result.as_numpy("OUTPUT")
            out["gw_version"] = result.get_response().model_version
            out["gw_id"] = result.get_response().id
            out["direct"] = direct.infer("loan_approval", infer_input(x), model_version="1").as_numpy(
                "OUTPUT"
            )
            out["own_id"] = (
                gw.infer("loan_approval", infer_input(x[:1]), request_id="my-id").get_response().id
            )
            streamed: list[object] = []
            gw.start_stream(callback=lambda result, error: streamed.append(error or result))
            for i in range(3):
                gw.async_stream_infer("loan_approval", infer_input(x[i : i + 1]), request_id=f"s{i}")
            gw.async_stream_infer("no_such_model", infer_input(x[:1]), request_id="bad")
            gw.stop_stream()  # waits for the replies
            out["stream"] = streamed
            for name, call in {
                "unknown": lambda: gw.infer("no_such_model", infer_input(x)),
                "shape": lambda: gw.infer("loan_approval", infer_input(x[:, :5].copy())),
                "dtype": lambda: gw.infer("loan_approval", [_int_input()]),
                "name": lambda: gw.infer("loan_approval", [_named("FEATURES", x)]),
                "version": lambda: gw.infer("loan_approval", infer_input(x), model_version="7"),
                "load": lambda: gw.load_model("loan_approval"),
            }.items():
                try:
                    call()
                    out[name] = None
                except InferenceServerException as exc:
                    out[name] = (exc.status(), exc.message())
            return out
        finally:
            gw.close()
            direct.close()

    out = await asyncio.to_thread(client_side)
    assert out["live"] and out["ready"] and out["model_ready"]
    meta = out["metadata"]
    assert meta["name"] == "loan_approval" and meta["inputs"][0]["name"] == "INPUT"
    assert meta["inputs"][0]["shape"] == ["-1", str(WIDTH)]
    assert out["config"]["version_policy"] == {"specific": {"versions": ["1"]}}
    assert out["server"]["name"] == "aifactory-gateway"
    assert out["gw_version"] == "1"
    np.testing.assert_allclose(out["gw"], out["direct"], rtol=1e-6)
    assert len(out["gw_id"]) == 32  # the prediction id the gateway gave it
    assert out["own_id"] == "my-id"
    streamed = out["stream"]
    ok = {
        r.get_response().id: r.as_numpy("OUTPUT") for r in streamed if isinstance(r, grpcclient.InferResult)
    }
    assert sorted(ok) == ["s0", "s1", "s2"]
    np.testing.assert_allclose(ok["s1"], out["direct"][1:2], rtol=1e-6)
    assert any(isinstance(r, InferenceServerException) and "no_such_model" in r.message() for r in streamed)
    assert out["unknown"][0] == "StatusCode.NOT_FOUND"
    for bad in ("shape", "dtype", "name"):
        status, message = out[bad]
        assert status == "StatusCode.INVALID_ARGUMENT", (bad, message)
        assert "input" in message and ("INPUT" in message or "FEATURES" in message), message
    assert "[-1, 25]" in out["shape"][1]
    assert out["version"][0] == "StatusCode.NOT_FOUND"
    assert out["load"][0] == "StatusCode.UNIMPLEMENTED"


def _int_input() -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("INPUT", [1, WIDTH], "INT64")
    tensor.set_data_from_numpy(np.zeros((1, WIDTH), dtype=np.int64))
    return tensor


def _named(name: str, x: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


async def test_business_predict_inline_by_entity_and_batch(gateway: RunningGateway, feature_store) -> None:  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(gateway.grpc_url) as channel:
        stub = gw_grpc.GatewayServiceStub(channel)
        inline = await stub.Predict(
            gw_pb.PredictRequest(use_case="loan_approval", features=as_values(features(7)))
        )
        p = inline.prediction
        assert p.model.version == 1 and p.model.model_name == "loan_approval" and len(p.prediction_id) == 32
        assert 0.0 <= p.output.double_value <= 1.0
        assert math.isclose(p.outputs["p_0"].double_value + p.outputs["p_1"].double_value, 1.0, rel_tol=1e-5)
        assert p.outputs["label"].int64_value in (0, 1)

        # The same applicant by entity id: features fetched online give the same answer.
        by_id = (
            await stub.Predict(gw_pb.PredictRequest(use_case="loan_approval", entity_id="a7"))
        ).prediction
        assert by_id.entity_id == "a7" and feature_store[1].calls == 1
        assert math.isclose(by_id.output.double_value, p.output.double_value, rel_tol=1e-5)
        # Expanded one-hot columns inline are accepted too.
        expanded = {
            name: common_pb2.Value(double_value=v)
            for name, v in zip(UC.model_inputs(), row(features(7)).tolist(), strict=True)
        }
        again = (
            await stub.Predict(gw_pb.PredictRequest(use_case="loan_approval", features=expanded))
        ).prediction
        assert math.isclose(again.output.double_value, p.output.double_value, rel_tol=1e-5)

        batch = await stub.PredictBatch(
            gw_pb.PredictBatchRequest(
                use_case="loan_approval",
                inputs=[
                    gw_pb.PredictionInput(entity_id="a1"),
                    gw_pb.PredictionInput(features=as_values({**features(2), "salary": "lots"})),
                    gw_pb.PredictionInput(entity_id="zz-unknown"),
                    gw_pb.PredictionInput(entity_id="a3", features={"age": common_pb2.Value(int64_value=99)}),
                ],
            )
        )
        got = batch.predictions
        assert len(got) == 4
        assert got[0].prediction_id and not got[0].error
        assert "INVALID_ARGUMENT" in got[1].error and "inputs[1].features.salary" in got[1].error
        assert "NOT_FOUND" in got[2].error and not got[2].prediction_id
        assert got[3].prediction_id and not got[3].error  # inline age overrides the fetched one

        for request, code, text in [
            (gw_pb.PredictRequest(use_case="nope", entity_id="a1"), grpc.StatusCode.NOT_FOUND, "nope"),
            (
                gw_pb.PredictRequest(
                    use_case="loan_approval",
                    features=as_values({k: v for k, v in features(1).items() if k != "hyears"}),
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "features.hyears",
            ),
            (
                gw_pb.PredictRequest(
                    use_case="loan_approval", features=as_values({**features(1), "elevel": 9})
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "features.elevel",
            ),
            (
                gw_pb.PredictRequest(
                    use_case="loan_approval", features=as_values({**features(1), "zzz": 1.0})
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "features.zzz",
            ),
            (gw_pb.PredictRequest(use_case="loan_approval"), grpc.StatusCode.INVALID_ARGUMENT, "entity_id"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Predict(request)
            assert err.value.code() is code and text in (err.value.details() or ""), err.value.details()


async def test_every_prediction_reaches_the_predictions_topic(gateway: RunningGateway, kafka, topics) -> None:  # type: ignore[no-untyped-def]
    x = np.stack([row(features(i)) for i in range(4)]).astype(np.float32)
    ids: list[str] = []
    async with grpc.aio.insecure_channel(gateway.grpc_url) as channel:
        stub = gw_grpc.GatewayServiceStub(channel)
        for i in range(20):
            reply = await stub.Predict(gw_pb.PredictRequest(use_case="loan_approval", entity_id=f"a{i}"))
            ids.append(reply.prediction.prediction_id)
    client = grpcclient_aio.InferenceServerClient(gateway.oip_url)
    try:
        for i in range(10):
            result = await client.infer("loan_approval", infer_input(x[:1]), request_id=f"oip-{i}")
            ids.append(result.get_response().id)
        many = await client.infer("loan_approval", infer_input(x), request_id="oip-many")  # 4 rows
        ids += [f"{many.get_response().id}/{r}" for r in range(4)]
    finally:
        await client.close()
    events = await read_events(
        kafka.bootstrap_servers, topics["predictions_topic"], events_pb2.PredictionLogged, len(ids)
    )
    logged = {e.prediction_id: (e, h) for e, h in events}
    assert sorted(logged) == sorted(ids)
    event, headers = logged[ids[0]]
    assert event.use_case == "loan_approval" and event.model.version == 1 and event.alias == "champion"
    assert event.entity_id == "a0" and not event.shadow and event.latency_us > 0
    assert len(event.trace_id) == 32 and event.timestamp.seconds > time.time() - 120
    assert headers["aif-event-type"] == b"aifactory.gateway.v1.PredictionLogged"
    assert headers["aif-event-id"] == ids[0].encode() and headers["aif-use-case"] == b"loan_approval"
    assert set(event.features) == set(UC.model_inputs())
    assert event.features["salary"].double_value == pytest.approx(features(0)["salary"], rel=1e-6)
    assert event.features["elevel__" + str(features(0)["elevel"])].double_value == 1.0
    assert 0 <= event.output.double_value <= 1 and set(event.outputs) == {"p_0", "p_1", "label"}
    oip_event, _ = logged["oip-3"]
    assert oip_event.entity_id == "" and oip_event.model.version == 1
    assert oip_event.features["salary"].double_value == pytest.approx(features(0)["salary"], rel=1e-6)
    assert gateway.service.predlog.dropped == 0


async def test_record_feedback_emits_feedback_recorded(gateway: RunningGateway, kafka, topics) -> None:  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(gateway.grpc_url) as channel:
        stub = gw_grpc.GatewayServiceStub(channel)
        pid = (
            await stub.Predict(gw_pb.PredictRequest(use_case="loan_approval", entity_id="a5"))
        ).prediction.prediction_id
        feedback_id = uuid.uuid4().hex
        reply = await stub.RecordFeedback(
            gw_pb.RecordFeedbackRequest(
                prediction_id=pid,
                use_case="loan_approval",
                outcome=common_pb2.Value(int64_value=1),
                feedback_id=feedback_id,
                record_id="r-5",
            )
        )
        assert reply.feedback_id == feedback_id
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RecordFeedback(
                gw_pb.RecordFeedbackRequest(
                    prediction_id=pid,
                    use_case="loan_approval",
                    outcome=common_pb2.Value(string_value="maybe"),
                )
            )
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "outcome" in (
            err.value.details() or ""
        )
    ((event, headers),) = await read_events(
        kafka.bootstrap_servers, topics["feedback_topic"], events_pb2.FeedbackRecorded, 1
    )
    assert event.prediction_id == pid and event.feedback_id == feedback_id and event.entity_id == "a5"
    assert event.outcome.int64_value == 1 and event.use_case == "loan_approval"
    assert headers["aif-event-id"] == feedback_id.encode()
    if "record_id" in event.DESCRIPTOR.fields_by_name:
        assert event.record_id == "r-5" and event.event_time.seconds > 0


async def test_tokens_are_required_on_both_apis_when_auth_is_on(triton, kafka, topics, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from libs.auth import DevAuth

    auth = DevAuth(tmp_path / "auth").ensure()
    settings = gateway_settings(
        triton.grpc_url,
        kafka.bootstrap_servers,
        static_aliases="loan_approval:champion=1",
        auth_mode="jwt",
        auth_dir=auth.directory,
        **topics,
    )
    gw = await start_gateway(settings)
    x = row(features(2))[None, :].astype(np.float32)
    app = {"authorization": "Bearer " + auth.issue("shop", {"loan_approval": ["app"]})}
    other = {"authorization": "Bearer " + auth.issue("shop", {"image_segments": ["app"]})}
    client = grpcclient_aio.InferenceServerClient(gw.oip_url)
    try:
        assert (await client.infer("loan_approval", infer_input(x), headers=app)).as_numpy(
            "OUTPUT"
        ).shape == (1, 2)
        assert await client.is_server_live()  # open, like health checks
        for headers, status in (
            (None, "StatusCode.UNAUTHENTICATED"),
            (other, "StatusCode.PERMISSION_DENIED"),
        ):
            with pytest.raises(InferenceServerException) as err:
                await client.infer("loan_approval", infer_input(x), headers=headers)
            assert err.value.status() == status
        async with grpc.aio.insecure_channel(gw.grpc_url) as channel:
            stub = gw_grpc.GatewayServiceStub(channel)
            request = gw_pb.PredictRequest(use_case="loan_approval", features=as_values(features(2)))
            assert (await stub.Predict(request, metadata=tuple(app.items()))).prediction.prediction_id
            with pytest.raises(grpc.aio.AioRpcError) as rpc_err:
                await stub.Predict(request)
            assert rpc_err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    finally:
        await client.close()
        await gw.stop()
