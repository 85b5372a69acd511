"""The shared gRPC bootstrap, in-process: health, reflection, errors, auth hook, drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from aifactory.trainer.v1 import trainer_service_pb2 as pb
from aifactory.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from libs.errors import InvalidArgument, NotFound, Unauthenticated
from libs.rpc import Principal, RpcServer, current_principal, insecure_channel
from libs.telemetry import setup_telemetry

SERVICE = pb.DESCRIPTOR.services_by_name["TrainerService"].full_name


class Scripted(pb_grpc.TrainerServiceServicer):
    """Answers by the request's use case, so one servicer exercises every path (the other
    methods are the generated base's: UNIMPLEMENTED)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.principals: list[str] = []

    async def SubmitTraining(
        self, request: pb.SubmitTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitTrainingResponse:
        self.principals.append(current_principal.get().subject)
        if request.use_case == "bad":
            raise InvalidArgument("use_case", "unknown use case 'bad'")
        if request.use_case == "missing":
            raise NotFound("no such job")
        if request.use_case == "crash":
            raise RuntimeError("secret internal detail")
        if request.use_case == "slow":
            await self.release.wait()
        return pb.SubmitTrainingResponse()


class TokenAuth:
    def authenticate(self, method: str, metadata: Mapping[str, str]) -> Principal:
        if metadata.get("authorization") != "Bearer good":
            raise Unauthenticated("missing or invalid credentials")
        return Principal(subject="alice", roles=frozenset({"ml-engineer"}))


@pytest.fixture
async def server() -> AsyncIterator[tuple[RpcServer, Scripted, grpc.aio.Channel]]:
    servicer = Scripted()
    srv = RpcServer("127.0.0.1:0", setup_telemetry("test"), authenticator=TokenAuth(), drain_seconds=5)
    srv.add_service(pb_grpc.add_TrainerServiceServicer_to_server, servicer, SERVICE)
    port = await srv.start()
    channel = insecure_channel(f"127.0.0.1:{port}")
    yield srv, servicer, channel
    await channel.close()
    await srv.stop()


AUTH = (("authorization", "Bearer good"),)


async def submit(channel: grpc.aio.Channel, use_case: str, metadata=AUTH) -> pb.SubmitTrainingResponse:  # type: ignore[no-untyped-def]
    return await pb_grpc.TrainerServiceStub(channel).SubmitTraining(
        pb.SubmitTrainingRequest(use_case=use_case), metadata=metadata, timeout=5
    )


async def code_of(coro) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value.code(), info.value.details() or ""


async def test_health_is_serving_and_open_without_credentials(server) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = server
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_service(server) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = server
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = [s.name async for r in responses for s in r.list_services_response.service]
    assert SERVICE in names and "grpc.health.v1.Health" in names


async def test_typed_errors_become_status_codes(server) -> None:  # type: ignore[no-untyped-def]
    _, servicer, channel = server
    assert await code_of(submit(channel, "bad")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "use_case: unknown use case 'bad'",
    )
    assert (await code_of(submit(channel, "missing")))[0] == grpc.StatusCode.NOT_FOUND
    # Unexpected errors do not leak their details.
    assert await code_of(submit(channel, "crash")) == (grpc.StatusCode.INTERNAL, "internal error")
    assert await submit(channel, "ok") == pb.SubmitTrainingResponse()
    assert servicer.principals[-1] == "alice"


async def test_unbuilt_methods_answer_unimplemented(server) -> None:  # type: ignore[no-untyped-def]
    _, _, channel = server
    stub = pb_grpc.TrainerServiceStub(channel)
    code, _ = await code_of(stub.ListTrainingJobs(pb.ListTrainingJobsRequest(), metadata=AUTH))
    assert code == grpc.StatusCode.UNIMPLEMENTED


async def test_authentication_hook_refuses_before_the_servicer(server) -> None:  # type: ignore[no-untyped-def]
    _, servicer, channel = server
    assert (await code_of(submit(channel, "ok", metadata=()))) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or invalid credentials",
    )
    assert servicer.principals == []


async def test_stop_drains_in_flight_requests_and_refuses_new_ones(server) -> None:  # type: ignore[no-untyped-def]
    srv, servicer, channel = server
    in_flight = asyncio.create_task(submit(channel, "slow"))
    while not servicer.principals:
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(srv.stop())
    await asyncio.sleep(0.2)
    code, _ = await code_of(submit(channel, "ok"))  # new calls are refused while draining
    assert code == grpc.StatusCode.UNAVAILABLE
    assert not in_flight.done() and not stopping.done()
    servicer.release.set()
    assert await in_flight == pb.SubmitTrainingResponse()  # drained, not cut off
    await stopping
