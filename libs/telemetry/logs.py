"""Log records as JSON lines carrying the trace, and log records into OpenTelemetry.

:class:`JsonFormatter` (``AIF_LOG_FORMAT=json``) writes one JSON object a line with the
``trace_id`` and ``span_id`` of the span current when the line was logged, so a log
backend links a line to its trace. :class:`OtelLogHandler` hands every record to the
OpenTelemetry logs SDK (``OTEL_LOGS_EXPORTER=otlp``), with the same trace context.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry._logs import LoggerProvider, LogRecord, SeverityNumber

# LogRecord attributes that are not ``extra=`` fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def trace_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span, as hex; ("", "") outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", ""
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (RFC 3339, UTC), level, service, logger, message,
    trace_id and span_id (when logged inside a span), exception, and any ``extra=`` fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id, span_id = trace_ids()
        if trace_id:
            out["trace_id"], out["span_id"] = trace_id, span_id
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        return json.dumps(out, default=str)


_SEVERITY = {
    logging.DEBUG: SeverityNumber.DEBUG,
    logging.INFO: SeverityNumber.INFO,
    logging.WARNING: SeverityNumber.WARN,
    logging.ERROR: SeverityNumber.ERROR,
    logging.CRITICAL: SeverityNumber.FATAL,
}
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


class OtelLogHandler(logging.Handler):
    """Emits each record to ``provider`` (batched and exported by the SDK), in the trace
    context current when it was logged. The exporters' own records are left out: a
    collector that is down must not feed its errors back into the export."""

    def __init__(self, provider: LoggerProvider, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._provider = provider

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("opentelemetry"):
            return
        try:
            body = record.getMessage()
            if record.exc_info:
                body += "\n" + logging.Formatter().formatException(record.exc_info)
            attributes: dict[str, str | int] = {
                "code.function.name": record.funcName,
                "code.line.number": record.lineno,
                "code.file.path": record.pathname,
            }
            self._provider.get_logger(record.name).emit(
                LogRecord(
                    timestamp=int(record.created * 1e9),
                    observed_timestamp=time.time_ns(),
                    context=otel_context.get_current(),
                    severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
                    severity_number=_SEVERITY.get(record.levelno, SeverityNumber.UNSPECIFIED),
                    body=body,
                    attributes=attributes,
                )
            )
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)
