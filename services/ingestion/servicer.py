"""gRPC servicer of the ingestion service: a thin transport over :class:`PushIngest` and the dataset."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aifactory.ingestion.v1 import ingestion_service_pb2 as pb
from aifactory.ingestion.v1 import ingestion_service_pb2_grpc
from libs.errors import InvalidArgument
from libs.rpc import current_principal
from services.ingestion import convert
from services.ingestion.push import PushIngest
from services.ingestion.store import RawDataset


class IngestionServicer(ingestion_service_pb2_grpc.IngestionServiceServicer):
    def __init__(self, push: PushIngest, dataset: RawDataset) -> None:
        self._push = push
        self._dataset = dataset

    async def Ingest(self, request: pb.IngestRequest, context: Any) -> pb.IngestResponse:
        result = await self._push.ingest(
            request.use_case,
            request.items,
            request_id=request.request_id or self._push.new_request_id(),
            subject=current_principal.get().subject,
        )
        accepted = sum(o.accepted for o in result.outcomes)
        return pb.IngestResponse(
            results=[convert.result(i, o) for i, o in enumerate(result.outcomes)],
            accepted_count=accepted,
            rejected_count=len(result.outcomes) - accepted,
            dataset=result.dataset,
        )

    async def IngestStream(
        self, request_iterator: AsyncIterator[pb.IngestStreamRequest], context: Any
    ) -> pb.IngestStreamResponse:
        """Each message is ingested (and published) as it arrives; the summary comes at the end."""
        use_case = request_id = ""
        received = accepted = 0
        rejected: list[pb.IngestResult] = []
        dataset = None
        subject = current_principal.get().subject
        async for message in request_iterator:
            if not received and not use_case:
                use_case = message.use_case
                self._push.ingestor(use_case)  # unknown use case: NOT_FOUND before any work
                request_id = message.request_id or self._push.new_request_id()
            elif message.use_case and message.use_case != use_case:
                raise InvalidArgument(
                    "use_case", f"a stream is for one use case: got {message.use_case!r} after {use_case!r}"
                )
            if not message.items:
                continue
            result = await self._push.ingest(
                use_case, message.items, request_id=request_id, start_index=received, subject=subject
            )
            for offset, outcome in enumerate(result.outcomes):
                if outcome.accepted:
                    accepted += 1
                else:
                    rejected.append(convert.result(received + offset, outcome))
            received += len(result.outcomes)
            dataset = result.dataset or dataset
        if not received:
            raise InvalidArgument("items", "the stream carried no items")
        return pb.IngestStreamResponse(
            received_count=received,
            accepted_count=accepted,
            rejected_count=len(rejected),
            rejected=rejected,
            dataset=dataset,
        )

    async def GetDataset(self, request: pb.GetDatasetRequest, context: Any) -> pb.GetDatasetResponse:
        self._push.ingestor(request.use_case)
        return pb.GetDatasetResponse(
            dataset=convert.dataset(self._dataset.get(request.use_case, request.version))
        )
