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
            # From the secret word on (the rest of the key, e.g. "sasl_plain_", stays as it is
            # either way): a pattern that starts with the key's prefix costs quadratic time
            # on a long word, seconds for a few KiB.
            r"(?i)((?:password|passwd|secret|salt|token|api[_-]?key|private[_-]?key)"
            r"[\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&)}\]]+)"
        ),
        rf"\1{MASK}",
    ),
    # Credentials in URLs: scheme://user:password@host.
    # (The scheme is bounded: unbounded, a long dotted word costs quadratic time.)
    (re.compile(r"(\b[a-z][a-z0-9+.-]{0,31}://[^:/\s@]+:)[^@\s/]+@"), rf"\1{MASK}@"),
    # PEM private keys.
    # (A scan stops at the next BEGIN: many BEGINs and no END must not cost quadratic time.)
    (
        re.compile(
            r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----(?:(?!-----BEGIN ).)*?-----END [A-Z ]{0,40}PRIVATE KEY-----",
            re.S,
        ),
        MASK,
    ),
]


# Longest log message (and traceback) kept: a caller's megabyte-long field must not make a
# megabyte-long line, nor cost the logging call (on the event loop) what scanning it costs.
MAX_LOG_CHARS = 4 * 1024
MAX_TRACEBACK_CHARS = 16 * 1024


def redact(text: str, limit: int = MAX_LOG_CHARS) -> str:
    """``text``, cut at ``limit`` characters, with every secret-looking part replaced by
    ``[REDACTED]``."""
    if len(text) > limit:
        text = f"{text[:limit]}…(+{len(text) - limit} more)"
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
            record.exc_text = redact(record.exc_text, MAX_TRACEBACK_CHARS)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, MAX_TRACEBACK_CHARS)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Adds the filter to every handler of ``logger`` (the root by default), once."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
