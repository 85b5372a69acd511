"""Attacks on the serving surface: Triton's model control, the gateway's Open Inference
Protocol port, and prediction ids (issue #16, "Trust").

Against real parts: a Triton of this module's own (aif.infra, restricted model control),
the gateway built in this process on real gRPC servers with token checks on, and Kafka.
Each attempt is counted with :func:`tests.security.conftest.attack`.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from aifactory.common.v1 import common_pb2
from aifactory.gateway.v1 import gateway_service_pb2 as gw_pb
from aifactory.gateway.v1 import gateway_service_pb2_grpc as gw_grpc
from libs.auth import DevAuth
from libs.usecase import load_default
from tests.gateway_support import RunningGateway, export_version, own_triton
from tests.integration.test_feedback_lookup import registry_target  # noqa: F401 - a fixture
from tests.security.attack_gateway import jwt_gateway
from tests.security.conftest import attack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

UC = "loan_approval"
SERVICE = "/inference.GRPCInferenceService/"


@pytest.fixture(scope="module")
def triton() -> Iterator[Any]:
    handle = own_triton("triton-attack-serving", 28631)
    export_version(handle.model_repository, load_default()[UC], 1)
    yield handle
    handle.stop()


@pytest.fixture
async def gateway(triton, kafka, new_topic, dev_auth: DevAuth) -> AsyncIterator[RunningGateway]:  # type: ignore[no-untyped-def]
    async for gw in jwt_gateway(
        triton,
        kafka,
        new_topic,
        dev_auth,
        "attack-serving-salt",
        oip_max_inflight_per_caller=3,
        oip_max_inflight_per_stream=2,
    ):
        yield gw


def _infer_request() -> bytes:
    from tests.integration.test_gateway import features, row

    req = service_pb2.ModelInferRequest(model_name=UC)
    req.inputs.add(name="INPUT", datatype="FP32", shape=[1, 25])
    req.raw_input_contents.append(row(features(1)).astype(np.float32).tobytes())
    return req.SerializeToString()


def _app(auth: DevAuth, subject: str = "attack-app") -> tuple[tuple[str, str], ...]:
    return auth.metadata(subject, {UC: ["app"]})


# -- Triton: model control only with the gateway's key -----------------------------------


def test_triton_model_control_needs_the_gateway_key(triton) -> None:  # type: ignore[no-untyped-def]
    """Loading a model runs its code: without the key, no load, unload, index or config."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        tries: dict[str, Any] = {
            "repository index": lambda h: client.get_model_repository_index(headers=h),
            "load": lambda h: client.load_model("identity_fp32", headers=h),
            "unload": lambda h: client.unload_model(UC, headers=h),
            "model config": lambda h: client.get_model_config(UC, headers=h),
            "statistics": lambda h: client.get_inference_statistics(headers=h),
            "shared memory": lambda h: client.get_system_shared_memory_status(headers=h),
        }
        for what, call in tries.items():
            for headers in ({}, {"triton-grpc-protocol-aif-control": "guessed"}):
                try:
                    call(headers)
                    succeeded = True
                except InferenceServerException:
                    succeeded = False
                attack(succeeded=succeeded)
                assert not succeeded, f"{what} without the key ({headers}) was served"
        # The holder of the key (the gateway) is served, and health stays open.
        client.get_model_repository_index(headers=triton.control_headers)
        assert client.is_server_live()
    finally:
        client.close()
    request = urllib.request.Request(
        f"http://{triton.http_url}/v2/repository/index", method="POST", data=b"{}"
    )
    try:
        urllib.request.urlopen(request, timeout=5)
        succeeded = True
    except urllib.error.HTTPError as exc:
        succeeded = exc.code < 400
    attack(succeeded=succeeded)
    assert not succeeded, "Triton's HTTP model repository answered without the key"


# -- the gateway's OIP port ------------------------------------------------------------------


async def test_an_anonymous_caller_costs_no_parsing_and_learns_nothing(gateway: RunningGateway) -> None:
    """A body that is not even protobuf, 32 MiB of it, without a token: UNAUTHENTICATED (not
    INVALID_ARGUMENT, which would mean it was parsed first), for every method but health."""
    garbage = b"\xff" * (32 << 20)
    async with grpc.aio.insecure_channel(
        gateway.oip_url, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        for method in (
            "ModelInfer",
            "ModelMetadata",
            "ModelConfig",
            "ModelStatistics",
            "ModelReady",
            "RepositoryIndex",
            "ServerMetadata",
        ):
            call = channel.unary_unary(SERVICE + method)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(garbage, timeout=30)
            attack(succeeded=err.value.code() is not grpc.StatusCode.UNAUTHENTICATED)
            assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED, (method, err.value.code())
        # Statistics and server metadata without a token, well-formed this time.
        for method, request in (
            ("ServerMetadata", service_pb2.ServerMetadataRequest()),
            ("ModelStatistics", service_pb2.ModelStatisticsRequest()),
        ):
            call = channel.unary_unary(SERVICE + method)
            try:
                await call(request.SerializeToString(), timeout=10)
                succeeded = True
            except grpc.aio.AioRpcError as exc:
                succeeded = exc.code() is not grpc.StatusCode.UNAUTHENTICATED
            attack(succeeded=succeeded)
            assert not succeeded, f"{method} answered a caller without a token"
        # A stream: refused before its first message is read.
        stream = channel.stream_stream(SERVICE + "ModelStreamInfer")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stream(iter([garbage[:1024]]), timeout=10):
                pass
        attack(succeeded=err.value.code() is not grpc.StatusCode.UNAUTHENTICATED)
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        # Health checks stay open.
        live = channel.unary_unary(SERVICE + "ServerLive")
        assert service_pb2.ServerLiveResponse.FromString(
            await live(service_pb2.ServerLiveRequest().SerializeToString(), timeout=5)
        ).live


async def test_one_caller_cannot_hold_more_than_its_share_of_calls(
    gateway: RunningGateway, dev_auth: DevAuth
) -> None:
    """Caps of 3 calls in flight per caller and 2 per stream: a flood gets RESOURCE_EXHAUSTED
    for the excess, and is served again once it slows down."""
    request = _infer_request()
    md = _app(dev_auth)
    async with grpc.aio.insecure_channel(gateway.oip_url) as channel:
        infer = channel.unary_unary(SERVICE + "ModelInfer")
        await infer(request, metadata=md, timeout=10)  # warm
        codes: list[grpc.StatusCode] = []

        async def one() -> None:
            try:
                await infer(request, metadata=md, timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())

        await asyncio.gather(*(one() for _ in range(60)))
        refused = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        attack(succeeded=refused == 0)
        assert refused > 0, "60 concurrent calls of one caller all ran past a cap of 3"
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, set(codes)
        await infer(request, metadata=md, timeout=10)  # served again

        stream = channel.stream_stream(SERVICE + "ModelStreamInfer")
        errors: list[str] = []
        answered = 0
        async for raw in stream(iter([request] * 40), metadata=_app(dev_auth, "attack-streamer"), timeout=30):
            answered += 1
            reply = service_pb2.ModelStreamInferResponse.FromString(raw)
            if reply.error_message:
                errors.append(reply.error_message)
        assert answered == 40, "every request on the stream is answered"
        refused = sum(e.startswith("RESOURCE_EXHAUSTED") for e in errors)
        attack(succeeded=refused == 0)
        assert refused > 0 and len(errors) == refused, errors[:3]


# -- prediction ids --------------------------------------------------------------------------


async def test_prediction_ids_cannot_be_guessed_or_claimed(
    gateway: RunningGateway, dev_auth: DevAuth
) -> None:
    """An attacker who sees its own prediction ids guesses the next one (another app's) and
    reports an outcome for it."""
    from tests.integration.test_gateway import as_values, features

    async with grpc.aio.insecure_channel(gateway.grpc_url) as channel:
        stub = gw_grpc.GatewayServiceStub(channel)
        attacker, victim = _app(dev_auth, "attacker"), _app(dev_auth, "victim")

        async def predict(md: Any) -> str:
            reply = await stub.Predict(
                gw_pb.PredictRequest(use_case=UC, features=as_values(features(3))), metadata=md, timeout=10
            )
            return reply.prediction.prediction_id  # type: ignore[no-any-return]

        own = [await predict(attacker) for _ in range(3)]
        victims = {await predict(victim) for _ in range(3)}
        # Guesses from the attacker's ids: the next counter values, and neighbours.
        last = int(own[-1], 16)
        guesses = [f"{last + d:032x}" for d in (1, 2, 3, 4, -1)] + [f"{int(own[0], 16) + 1:032x}"]
        hit = victims & set(guesses)
        attack(succeeded=bool(hit))
        assert not hit, "a prediction id of another app was guessed from one's own"
        for guess in guesses[:3]:
            try:
                await stub.RecordFeedback(
                    gw_pb.RecordFeedbackRequest(
                        prediction_id=guess, use_case=UC, outcome=common_pb2.Value(int64_value=1)
                    ),
                    metadata=attacker,
                    timeout=10,
                )
                succeeded = True
            except grpc.aio.AioRpcError as exc:
                succeeded = False
                assert exc.code() is grpc.StatusCode.NOT_FOUND, exc.code()
            attack(succeeded=succeeded)
            assert not succeeded, "feedback was accepted for a prediction id nobody was given"
        # The genuine owner's feedback goes through.
        await stub.RecordFeedback(
            gw_pb.RecordFeedbackRequest(
                prediction_id=next(iter(victims)), use_case=UC, outcome=common_pb2.Value(int64_value=1)
            ),
            metadata=victim,
            timeout=10,
        )


# -- lineage by prediction id, per use case ----------------------------------------------------


async def test_one_use_case_cannot_read_or_claim_anothers_prediction(registry_target) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The registry's prediction index (real gRPC) holds p-9 of loan_approval: a caller of
    image_segments neither reads its lineage entry nor records an outcome for it; both
    answer NOT_FOUND, as for an id that does not exist."""
    from aifactory.registry.v1 import registry_service_pb2 as reg_pb
    from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
    from libs.errors import NotFound
    from libs.rpc import insecure_channel
    from services.gateway.feedback import FeedbackRecorder, RecentPredictions, RegistryPredictions
    from tests.unit.gateway.test_servicer import FakePublisher

    target, _ = registry_target
    specs = load_default()
    async with insecure_channel(target) as channel:
        stub = reg_grpc.RegistryServiceStub(channel)
        try:
            await stub.GetPrediction(
                reg_pb.GetPredictionRequest(prediction_id="p-9", use_case="image_segments")
            )
            succeeded = True
        except grpc.aio.AioRpcError as exc:
            succeeded = exc.code() is not grpc.StatusCode.NOT_FOUND
        attack(succeeded=succeeded)
        assert not succeeded, "another use case's lineage entry was read by its id"
        own = await stub.GetPrediction(reg_pb.GetPredictionRequest(prediction_id="p-9", use_case=UC))
        assert own.model.use_case == UC

        publisher = FakePublisher()
        recorder = FeedbackRecorder(
            publisher,  # type: ignore[arg-type]
            "fb",
            {UC: specs[UC], "image_segments": specs["image_segments"]},
            RecentPredictions(),
            lookup_wait_s=0,
        )
        recorder.lookup = RegistryPredictions(channel)
        try:
            await recorder.record(
                gw_pb.RecordFeedbackRequest(
                    prediction_id="p-9", use_case="image_segments", outcome=common_pb2.Value(int64_value=1)
                )
            )
            succeeded = True
        except NotFound as exc:
            succeeded = UC in exc.message  # the answer must not say whose it is
        attack(succeeded=succeeded or bool(publisher.sent))
        assert not succeeded and not publisher.sent, (
            "an outcome was claimed for another use case's prediction"
        )
