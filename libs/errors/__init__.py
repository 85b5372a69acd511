"""Typed errors that know their gRPC status.

Domain code raises these; the gRPC interceptor in :mod:`libs.rpc` turns them into
status codes in one place, so no servicer maps errors by hand.
"""

from __future__ import annotations

import grpc


class AifError(Exception):
    """Base of every error the factory raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(AifError):
    """Input is malformed; ``field`` names the offending field (dotted path)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, message: str) -> None:
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
]
