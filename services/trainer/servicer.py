"""gRPC servicer of the trainer service: protobuf in, a :class:`TrainerCore` call, protobuf out."""

from __future__ import annotations

import logging

import grpc

from aifactory.trainer.v1 import trainer_service_pb2 as pb
from aifactory.trainer.v1 import trainer_service_pb2_grpc
from libs.auth import authorize_use_case
from libs.errors import InvalidArgument
from libs.rpc import current_principal
from services.trainer import convert
from services.trainer.core import TrainerCore
from services.trainer.domain import JobState
from services.trainer.publisher import TrainerPublisher

log = logging.getLogger(__name__)

MAX_PAGE = 500


class TrainerServicer(trainer_service_pb2_grpc.TrainerServiceServicer):
    def __init__(self, core: TrainerCore, publisher: TrainerPublisher) -> None:
        self._core = core
        self._publisher = publisher

    async def SubmitTraining(
        self, request: pb.SubmitTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitTrainingResponse:
        principal = current_principal.get()
        event = convert.requested_from_submit(request, principal.subject, tuple(sorted(principal.roles)))
        job, created = await self._core.submit(convert.job_from_requested(event))
        if created:
            try:
                await self._publisher.training_requested(event)
            except Exception as exc:  # noqa: BLE001 - the job is stored and will run; the record is extra
                log.warning("training request %s accepted but not published: %s", job.job_id, exc)
        return pb.SubmitTrainingResponse(job=convert.job_to_proto(job))

    async def GetTrainingJob(
        self, request: pb.GetTrainingJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTrainingJobResponse:
        if not request.job_id:
            raise InvalidArgument("job_id", "required")
        job = self._core.get(request.job_id)
        authorize_use_case(job.use_case)
        return pb.GetTrainingJobResponse(job=convert.job_to_proto(job))

    async def ListTrainingJobs(
        self, request: pb.ListTrainingJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTrainingJobsResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or 50, MAX_PAGE)
        try:
            offset = int(request.page_token or 0)
        except ValueError:
            raise InvalidArgument("page_token", "not a token from a previous page") from None
        if offset < 0:
            raise InvalidArgument("page_token", "not a token from a previous page")
        states: tuple[JobState, ...] = ()
        if request.state:
            if request.state not in convert.STATE_FROM_PB:
                raise InvalidArgument("state", f"unknown state {request.state}")
            states = (convert.STATE_FROM_PB[request.state],)
        jobs = self._core.list(use_case=request.use_case, states=states, limit=size + 1, offset=offset)
        more = len(jobs) > size
        return pb.ListTrainingJobsResponse(
            jobs=[convert.job_to_proto(j) for j in jobs[:size]],
            next_page_token=str(offset + size) if more else "",
        )
