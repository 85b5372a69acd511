"""gRPC servicer of the monitor: drift reports and alerts, read from its store."""

from __future__ import annotations

import asyncio
from datetime import datetime

from grpc.aio import ServicerContext

from aifactory.monitor.v1 import monitor_service_pb2 as pb
from aifactory.monitor.v1 import monitor_service_pb2_grpc
from libs.auth import authorize_use_case
from libs.errors import InvalidArgument
from services.monitor import convert
from services.monitor.domain import VersionKey
from services.monitor.store import ReportReader

DEFAULT_PAGE = 50
MAX_PAGE = 500


def _page(size: int, token: str) -> tuple[int, int]:
    if size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    if token and not token.isdigit():
        raise InvalidArgument("page_token", "not a token this service issued")
    return min(size or DEFAULT_PAGE, MAX_PAGE), int(token or 0)


def _since(request: pb.ListDriftReportsRequest | pb.ListAlertsRequest) -> datetime | None:
    return convert.when(request.since, field="since") if request.HasField("since") else None


def _next(offset: int, limit: int, got: int) -> str:
    return str(offset + got) if got == limit else ""


class MonitorServicer(monitor_service_pb2_grpc.MonitorServiceServicer):
    def __init__(self, store: ReportReader) -> None:
        self._store = store

    async def ListDriftReports(
        self, request: pb.ListDriftReportsRequest, context: ServicerContext
    ) -> pb.ListDriftReportsResponse:
        limit, offset = _page(request.page_size, request.page_token)
        model = None
        if request.HasField("model"):
            ref = request.model
            if ref.use_case and request.use_case and ref.use_case != request.use_case:
                raise InvalidArgument(
                    "model.use_case", f"is {ref.use_case!r} but use_case is {request.use_case!r}"
                )
            if ref.use_case and not request.use_case:
                # Authorised for the request's use_case only: a model filter needs it too.
                raise InvalidArgument("use_case", "required with a model filter")
            if ref.version < 0:
                raise InvalidArgument("model.version", "must not be negative")
            model = VersionKey(request.use_case, ref.model_name, ref.version)
        reports = await asyncio.to_thread(
            self._store.list_reports,
            use_case=request.use_case,
            model=model,
            drift_only=request.drift_only,
            since=_since(request),
            limit=limit,
            offset=offset,
        )
        return pb.ListDriftReportsResponse(
            reports=reports, next_page_token=_next(offset, limit, len(reports))
        )

    async def GetDriftReport(
        self, request: pb.GetDriftReportRequest, context: ServicerContext
    ) -> pb.GetDriftReportResponse:
        if not request.report_id:
            raise InvalidArgument("report_id", "required")
        report = await asyncio.to_thread(self._store.get_report, request.report_id)
        authorize_use_case(report.use_case)
        return pb.GetDriftReportResponse(report=report)

    async def ListAlerts(
        self, request: pb.ListAlertsRequest, context: ServicerContext
    ) -> pb.ListAlertsResponse:
        limit, offset = _page(request.page_size, request.page_token)
        if request.min_severity and convert.severity_of(request.min_severity) is None:
            raise InvalidArgument("min_severity", f"unknown severity {request.min_severity}")
        alerts = await asyncio.to_thread(
            self._store.list_alerts,
            use_case=request.use_case,
            min_severity=request.min_severity,
            open_only=request.open_only,
            since=_since(request),
            limit=limit,
            offset=offset,
        )
        return pb.ListAlertsResponse(
            alerts=[convert.alert_pb(a) for a in alerts], next_page_token=_next(offset, limit, len(alerts))
        )
