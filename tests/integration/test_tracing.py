"""One trace spans a gRPC call, the event it publishes and the consumer that handles it."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from aifactory.trainer.v1 import events_pb2 as events
from aifactory.trainer.v1 import trainer_service_pb2 as pb
from aifactory.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from libs.bus import DeadLetters, Event, EventConsumer, EventPublisher
from libs.rpc import RpcServer, insecure_channel
from libs.telemetry import setup_telemetry
from services.trainer.servicer import TrainerServicer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class Publishing(TrainerServicer):
    def __init__(self, publisher: EventPublisher, topic: str) -> None:
        self.publisher, self.topic = publisher, topic

    async def SubmitTraining(
        self, request: pb.SubmitTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitTrainingResponse:
        await self.publisher.publish(
            self.topic, events.TrainingRequested(use_case=request.use_case), use_case=request.use_case
        )
        return pb.SubmitTrainingResponse()


async def test_grpc_call_and_event_share_one_trace(kafka, new_topic, spans) -> None:  # type: ignore[no-untyped-def]
    topic, dlq = await new_topic(), await new_topic("dlq")
    telemetry = setup_telemetry("test")
    async with EventPublisher(kafka.bootstrap_servers, producer="trainer") as publisher:
        server = RpcServer("127.0.0.1:0", telemetry)
        server.add_service(
            pb_grpc.add_TrainerServiceServicer_to_server,
            Publishing(publisher, topic),
            pb.DESCRIPTOR.services_by_name["TrainerService"].full_name,
        )
        port = await server.start()
        try:
            async with insecure_channel(f"127.0.0.1:{port}") as channel:
                with trace.get_tracer("client").start_as_current_span("client call"):
                    await pb_grpc.TrainerServiceStub(channel).SubmitTraining(
                        pb.SubmitTrainingRequest(use_case="loan"), timeout=10
                    )
        finally:
            await server.stop()

        handled: list[Event[Message]] = []

        async def handle(event: Event[Message]) -> None:
            with trace.get_tracer("evaluator").start_as_current_span("effect"):
                handled.append(event)

        consumer = EventConsumer(
            kafka.bootstrap_servers,
            "g-" + topic,
            {topic: [events.TrainingRequested]},
            handle,
            DeadLetters(publisher, dlq),
        )
        task = asyncio.create_task(consumer.run())
        async with asyncio.timeout(30):
            while not handled:
                await asyncio.sleep(0.05)
        await consumer.stop()
        await task

    by_name = {s.name: s for s in spans.get_finished_spans()}
    chain = [
        "client call",
        "/aifactory.trainer.v1.TrainerService/SubmitTraining",
        f"publish {topic}",
        f"consume {topic}",
        "effect",
    ]
    assert set(chain) <= set(by_name), sorted(by_name)
    trace_ids = {by_name[name].context.trace_id for name in chain}
    assert len(trace_ids) == 1, "the call, the event and its effect must be one trace"
    for parent, child in zip(chain, chain[1:], strict=False):
        assert by_name[child].parent is not None
        assert by_name[child].parent.span_id == by_name[parent].context.span_id, f"{child} under {parent}"
    assert by_name[chain[1]].kind == SpanKind.SERVER
    assert by_name[chain[2]].kind == SpanKind.PRODUCER
    assert by_name[chain[3]].kind == SpanKind.CONSUMER
