"""A request that does not parse is INVALID_ARGUMENT, in every method, through the shared interceptor.

gRPC's own answer to a request its deserializer rejects is UNKNOWN, with the parser's
message as details; the interceptor parses requests itself so the caller gets a typed
status and nothing of the parser. Fast and in-process (the fuzz suite does the same
against the running services).
"""

from __future__ import annotations

import grpc
import pytest

from libs.auth import DevAuth
from tests.security.conftest import ServeAll, record
from tests.security.fuzzing import tag, varint
from tests.security.grpc_targets import all_methods

# Field number 0 never parses; an overrunning length neither.
GARBAGE = [b"\x00\x01", tag(1, 2) + varint(1 << 20) + b"x", b"\xff" * 11]


@pytest.mark.timeout(60)
async def test_every_method_answers_invalid_argument_for_a_request_that_does_not_parse(
    serve_all: ServeAll, dev_auth: DevAuth
) -> None:
    channel = await serve_all()
    admin = dev_auth.metadata()
    wrong: list[str] = []
    for method in all_methods():
        for body in GARBAGE:
            try:
                if method.client_streaming:
                    await channel.stream_unary(method.path)(iter([body]), metadata=admin, timeout=5)
                elif method.server_streaming:
                    async for _ in channel.unary_stream(method.path)(body, metadata=admin, timeout=5):
                        pass
                else:
                    await channel.unary_unary(method.path)(body, metadata=admin, timeout=5)
                wrong.append(f"{method.path}: OK")
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT or "Error parsing" in (exc.details() or ""):
                    wrong.append(f"{method.path}: {exc.code().name} {exc.details()!r}")
    record("fuzz_messages", len(all_methods()) * len(GARBAGE))
    assert not wrong, "\n".join(wrong)


@pytest.mark.timeout(30)
async def test_a_bad_message_later_in_a_request_stream_is_invalid_argument(
    serve_all: ServeAll, dev_auth: DevAuth
) -> None:
    from aifactory.ingestion.v1 import ingestion_service_pb2 as ing
    from aifactory.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc

    seen: list[str] = []

    class Reading(ing_grpc.IngestionServiceServicer):
        async def IngestStream(self, request_iterator, context):  # type: ignore[no-untyped-def]
            async for message in request_iterator:
                seen.append(message.use_case)
            return ing.IngestStreamResponse(received_count=len(seen))

    channel = await serve_all(servicers={"aifactory.ingestion.v1.IngestionService": Reading()})
    good = ing.IngestStreamRequest(use_case="loan_approval").SerializeToString()
    stub = channel.stream_unary("/aifactory.ingestion.v1.IngestionService/IngestStream")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(iter([good, GARBAGE[0], good]), metadata=dev_auth.metadata(), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert seen == ["loan_approval"], "the servicer saw the messages before the bad one, and no more"
    # Without a token, the payload is never parsed: UNAUTHENTICATED, whatever it holds.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(iter([GARBAGE[0]]), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    record("fuzz_messages", 4)
