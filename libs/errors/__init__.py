"""Typed errors that know their gRPC status.

Domain code raises these; the gRPC interceptor in :mod:`libs.rpc` turns them into
status codes in one place, so no servicer maps errors by hand.
"""

from __future__ import annotations

import grpc

# Longest text of one caller-supplied value in a message, and longest message: a status
# detail travels in a gRPC trailer (a few KiB at most) and a log line should stay a line.
CLIP_CHARS = 200
MAX_MESSAGE_CHARS = 2000


def clip(value: object, limit: int = CLIP_CHARS) -> str:
    """``value`` as text of at most ``limit`` characters (plus a note of how much was cut).

    Every caller-supplied value bound for a log line, an error message or a regular
    expression goes through this first: a megabyte-long field must cost what a short one
    does. A string or bytes is cut *before* it is copied or escaped, so the cost does not
    grow with the input."""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value[: limit + 1])
        text = raw[:limit].decode("utf-8", "replace")
        extra = len(value) - limit
    elif isinstance(value, str):
        text, extra = value[:limit], len(value) - limit
    else:
        text = repr(value)
        extra = len(text) - limit
        text = text[:limit]
    return text if extra <= 0 else f"{text}…(+{extra} more)"


class AifError(Exception):
    """Base of every error the factory raises on purpose. The message is bounded
    (:data:`MAX_MESSAGE_CHARS`): whatever a caller sent, the status it gets back fits."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        message = clip(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.message = message


class InvalidArgument(AifError):
    """Input is malformed; ``field`` names the offending field (dotted path)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, message: str) -> None:
        field = clip(field)
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(AifError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(AifError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(AifError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(AifError):
    """No valid credentials. ``reason`` is a short code for logs and metrics, never for the caller."""

    code = grpc.StatusCode.UNAUTHENTICATED

    def __init__(self, message: str, *, reason: str = "unauthenticated") -> None:
        super().__init__(message)
        self.reason = reason


class PermissionDenied(AifError):
    """Valid credentials, not allowed. ``reason`` as for :class:`Unauthenticated`."""

    code = grpc.StatusCode.PERMISSION_DENIED

    def __init__(self, message: str, *, reason: str = "forbidden") -> None:
        super().__init__(message)
        self.reason = reason


class Unavailable(AifError):
    """A dependency is down; callers may retry."""

    code = grpc.StatusCode.UNAVAILABLE


class StatusError(AifError):
    """A status known only at run time: a dependency's own error, passed on with its code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConfigError(AifError):
    """Configuration is missing or wrong; raised at start, before serving."""

    code = grpc.StatusCode.FAILED_PRECONDITION


__all__ = [
    "CLIP_CHARS",
    "MAX_MESSAGE_CHARS",
    "AifError",
    "AlreadyExists",
    "ConfigError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "StatusError",
    "Unauthenticated",
    "Unavailable",
    "clip",
]
