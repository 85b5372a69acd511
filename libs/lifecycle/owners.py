"""Read clients of the services that own lifecycle events, to confirm an event before acting.

- :class:`GrpcEvaluations`: the evaluator owns ``ModelEvaluated``: its report by id
  (``GetEvaluationReport``).
- :class:`GrpcMonitor`: the monitor owns ``DriftDetected`` and ``RollbackRequested``: a
  drift report by id (``GetDriftReport``) and the alert a rollback request raised
  (``ListAlerts``; the monitor names it ``alert.<request id>``).
- :class:`GrpcRegistryAudit`: the registry owns ``AliasChanged``: the audit entry each one
  names (``ListAuditEvents``), which tells a superseded genuine change (replayed history)
  from a forgery dated in the past.

Each answers None when the owner has no such thing (the event is then forged), raises
``Unavailable`` when the owner cannot be reached (the consumer retries), and another typed
error when it refuses (see :func:`libs.rpc.errors.typed_rpc_error`). The channels are
the caller's (built with its token and TLS). Protobuf in and out: the callers compare a
few fields and keep nothing of it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc

from aifactory.evaluator.v1 import evaluator_service_pb2 as ev_pb
from aifactory.evaluator.v1 import evaluator_service_pb2_grpc as ev_grpc
from aifactory.monitor.v1 import monitor_service_pb2 as mon_pb
from aifactory.monitor.v1 import monitor_service_pb2_grpc as mon_grpc
from aifactory.registry.v1 import registry_service_pb2 as reg_pb
from aifactory.registry.v1 import registry_service_pb2_grpc as reg_grpc
from libs.rpc.errors import typed_rpc_error

# How far ListAlerts is paged looking for one alert (500 a page): a use case with more
# critical alerts than this is not confirmed, which fails safe.
MAX_ALERT_PAGES = 20
# ListAuditEvents page size (the registry caps it too).
AUDIT_PAGE = 500

T = TypeVar("T")


def rollback_alert_id(request_id: str) -> str:
    """The id of the alert the monitor raises with the rollback request ``request_id``."""
    return f"alert.{request_id}"


class EvaluationReports(Protocol):
    async def report(self, report_id: str) -> ev_pb.EvaluationReport | None: ...


class MonitorReports(Protocol):
    async def drift_report(self, report_id: str) -> mon_pb.DriftReport | None: ...

    async def alert(self, use_case: str, alert_id: str) -> mon_pb.Alert | None: ...


@dataclass(frozen=True)
class AliasChange:
    """An alias change as the registry's audit log records it."""

    use_case: str
    alias: str
    new_version: int  # 0: the alias was removed


class AliasAudit(Protocol):
    async def alias_change(self, use_case: str, audit_event_id: str) -> AliasChange | None: ...


async def _unless_missing(call: Awaitable[T], what: str) -> T | None:
    """The owner's answer; None when it has no such record (NOT_FOUND: the event names
    something its owner never made), any other refusal as a typed error."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.NOT_FOUND:
            return None
        raise typed_rpc_error(exc, what) from None


class GrpcEvaluations:
    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 10.0) -> None:
        self._stub = ev_grpc.EvaluatorServiceStub(channel)
        self._timeout = timeout_s

    async def report(self, report_id: str) -> ev_pb.EvaluationReport | None:
        reply = await _unless_missing(
            self._stub.GetEvaluationReport(
                ev_pb.GetEvaluationReportRequest(report_id=report_id), timeout=self._timeout
            ),
            "evaluator GetEvaluationReport",
        )
        return None if reply is None else reply.report


class GrpcMonitor:
    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 10.0) -> None:
        self._stub = mon_grpc.MonitorServiceStub(channel)
        self._timeout = timeout_s

    async def drift_report(self, report_id: str) -> mon_pb.DriftReport | None:
        reply = await _unless_missing(
            self._stub.GetDriftReport(
                mon_pb.GetDriftReportRequest(report_id=report_id), timeout=self._timeout
            ),
            "monitor GetDriftReport",
        )
        return None if reply is None else reply.report

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


class GrpcRegistryAudit:
    """The alias changes of the registry's audit log, by audit entry id.

    The log is append-only, so what was read is kept (alias entries only: a few per
    promotion) and each miss reads just the entries after the last one seen; a replay of a
    use case's whole history costs one pass over its log, not one per event."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float = 10.0) -> None:
        self._stub = reg_grpc.RegistryServiceStub(channel)
        self._timeout = timeout_s
        self._changes: dict[str, dict[str, AliasChange]] = {}  # use case → entry id → change
        self._after: dict[str, int] = {}  # use case → last sequence read

    async def alias_change(self, use_case: str, audit_event_id: str) -> AliasChange | None:
        changes = self._changes.setdefault(use_case, {})
        if audit_event_id and audit_event_id not in changes:
            await self._read_new(use_case, changes)
        return changes.get(audit_event_id) if audit_event_id else None

    async def _read_new(self, use_case: str, changes: dict[str, AliasChange]) -> None:
        while True:
            try:
                reply = await self._stub.ListAuditEvents(
                    reg_pb.ListAuditEventsRequest(
                        use_case=use_case, after_sequence=self._after.get(use_case, 0), page_size=AUDIT_PAGE
                    ),
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as exc:
                raise typed_rpc_error(exc, "registry ListAuditEvents") from None
            for entry in reply.audit_events:
                self._after[use_case] = max(self._after.get(use_case, 0), entry.sequence)
                change = _alias_change(entry)
                if change is not None:
                    changes[entry.event_id] = change
            if not reply.next_page_token or not reply.audit_events:
                return


def _alias_change(entry: reg_pb.AuditEvent) -> AliasChange | None:
    """The alias change an audit entry records (``alias.*`` actions), else None."""
    if not entry.action.startswith("alias.") or not entry.alias:
        return None
    try:
        details = json.loads(entry.details_json or "{}")
        new_version = int(details.get("new_version", entry.model.version))
    except (ValueError, TypeError, AttributeError):
        return None  # not what the registry writes: confirms nothing
    return AliasChange(entry.use_case, entry.alias, new_version)
