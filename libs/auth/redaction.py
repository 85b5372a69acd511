"""Keeps secrets out of logs: a logging filter that masks tokens, passwords and keys.

No code of ours logs a credential on purpose; this is the net under mistakes (an
exception message quoting a header, a library echoing its config). It rewrites
each record's final text, including a formatted traceback, before any handler
writes it. :func:`install` puts it on the root logger's handlers, which every
propagating record passes through (a filter on a logger would miss its children).
"""

from __future__ import annotations

import logging
import re

MASK = "[REDACTED]"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization headers, whatever the token looks like.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    # Anything shaped like a JWT (three base64url parts, the first a JSON header).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    # key=value / key: value where the key names a secret (password=, sasl_plain_password=...).
    (
        re.compile(
            r"(?i)([\w.-]*(?:password|passwd|secret|salt|token|api[_-]?key|private[_-]?key)"
            r"[\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&)}\]]+)"
        ),
        rf"\1{MASK}",
    ),
    # Credentials in URLs: scheme://user:password@host.
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@]+:)[^@\s/]+@"), rf"\1{MASK}@"),
    # PEM private keys.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), MASK),
]


def redact(text: str) -> str:
    """``text`` with every secret-looking part replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and traceback) with secrets masked; never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Adds the filter to every handler of ``logger`` (the root by default), once."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
