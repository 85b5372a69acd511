"""Read clients of the services that own lifecycle events, to confirm an event before acting.

- :class:`GrpcEvaluations`: the evaluator owns ``ModelEvaluated``: its report by id
  (``GetEvaluationReport``).
- :class:`GrpcMonitor`: the monitor owns ``DriftDetected`` and ``RollbackRequested``: a
  drift report by id (``GetDriftReport``) and the alert a rollback request raised
  (``ListAlerts``; the monitor names it ``alert.<request id>``).

Each answers None when the owner has no such thing (the event is then forged), raises
``Unavailable`` when the owner cannot be reached (the consumer retries), and another typed
error when it refuses (see :func:`libs.rpc.errors.typed_rpc_error`). The channels are
the caller's (built with its token and TLS). Protobuf in and out: the callers compare a
few fields and keep nothing of it.
"""

from __future__ import annotations

from typing import Protocol

import grpc

from aifactory.evaluator.v1 import evaluator_service_pb2 as ev_pb
from aifactory.evaluator.v1 import evaluator_service_pb2_grpc as ev_grpc
from aifactory.monitor.v1 import monitor_service_pb2 as mon_pb
from aifactory.monitor.v1 import monitor_service_pb2_grpc as mon_grpc
from libs.rpc.errors import typed_rpc_error

# How far ListAlerts is paged looking for one alert (500 a page): a use case with more
# critical alerts than this is not confirmed, which fails safe.
MAX_ALERT_PAGES = 20


def rollback_alert_id(request_id: str) -> str:
    """The id of the alert the monitor raises with the rollback request ``request_id``."""
    return f"alert.{request_id}"


class EvaluationReports(Protocol):
    async def report(self, report_id: str) -> ev_pb.EvaluationReport | None: ...


class MonitorReports(Protocol):
    async def drift_report(self, report_id: str) -> mon_pb.DriftReport | None: ...

    async def alert(self, use_case: str, alert_id: str) -> mon_pb.Alert | None: ...


class GrpcEvaluations:
    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 10.0) -> None:
        self._stub = ev_grpc.EvaluatorServiceStub(channel)
        self._timeout = timeout_s

    async def report(self, report_id: str) -> ev_pb.EvaluationReport | None:
        try:
            reply = await self._stub.GetEvaluationReport(
                ev_pb.GetEvaluationReportRequest(report_id=report_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise typed_rpc_error(exc, "evaluator GetEvaluationReport") from None
        return reply.report


class GrpcMonitor:
    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 10.0) -> None:
        self._stub = mon_grpc.MonitorServiceStub(channel)
        self._timeout = timeout_s

    async def drift_report(self, report_id: str) -> mon_pb.DriftReport | None:
        try:
            reply = await self._stub.GetDriftReport(
                mon_pb.GetDriftReportRequest(report_id=report_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise typed_rpc_error(exc, "monitor GetDriftReport") from None
        return reply.report

    async def alert(self, use_case: str, alert_id: str) -> mon_pb.Alert | None:
        token = ""
        for _ in range(MAX_ALERT_PAGES):
            try:
                reply = await self._stub.ListAlerts(
                    mon_pb.ListAlertsRequest(
                        use_case=use_case,
                        min_severity=mon_pb.ALERT_SEVERITY_CRITICAL,
                        page_size=500,
                        page_token=token,
                    ),
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as exc:
                raise typed_rpc_error(exc, "monitor ListAlerts") from None
            for alert in reply.alerts:
                if alert.alert_id == alert_id:
                    return alert
            token = reply.next_page_token
            if not token:
                return None
        return None
