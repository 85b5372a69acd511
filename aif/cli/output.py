"""What ``aif`` prints: rich tables for people, ``--json`` for scripts, one-line errors.

Exit codes (``aif --help`` and docs/cli.md list them):

- 0: done;
- 1: the factory answered no: a spec invalid or refused, a job failed, a version or
  report not found, records dead-lettered, the audit chain broken, a service not SERVING;
- 2: the command could not run: bad usage or input, no or bad configuration, a service
  unreachable, the caller not authenticated or not allowed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console

OK, REFUSED, CANNOT_RUN = 0, 1, 2
EXIT_CODES = (
    "Exit codes: 0 done; 1 the factory answered no (invalid or refused spec, failed job, not "
    "found, dead letters, broken audit chain, a service not serving); 2 the command could not "
    "run (usage, configuration, service unreachable, not authenticated or not allowed)."
)

# gRPC answers about the request itself (exit 1), as opposed to the call (exit 2).
_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.ABORTED,
}
# What to do about a status, appended to its one line.
_HINTS = {
    grpc.StatusCode.UNAVAILABLE: "start the factory (aif up) or point aif at it (--{service}, --context)",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the {service} is slow or unreachable: check aif status",
    grpc.StatusCode.UNAUTHENTICATED: "give a valid token (--token-file, AIF_TOKEN or the context's "
    "token-file; aif token issue makes one)",
    grpc.StatusCode.PERMISSION_DENIED: "your token lacks the role: ask for one on this use case "
    "(aif token issue --role USE_CASE:ROLE)",
    grpc.StatusCode.NOT_FOUND: "check the name or id (aif usecase list, aif models list USE_CASE)",
}


class CliError(Exception):
    """One line saying what went wrong and what to do; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = CANNOT_RUN) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def rpc_error(exc: grpc.RpcError, service: str, target: str) -> CliError:
    """A failed call as one line: the status, the server's details and what to do."""
    code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
    details = (exc.details() or "").splitlines()[0] if exc.details() else ""  # type: ignore[attr-defined]
    hint = _HINTS.get(code, "").format(service=service)
    if code == grpc.StatusCode.UNAVAILABLE:
        # gRPC's details name every address it tried; the target says it in one word.
        line = f"{service} at {target} is unreachable (UNAVAILABLE)"
    else:
        line = f"{service}: {code.name}: {details}"
    line += f"; {hint}" if hint else ""
    return CliError(line, REFUSED if code in _REFUSALS else CANNOT_RUN)


def to_dict(message: Message) -> dict[str, Any]:
    """A reply as JSON-ready data (proto field names, every field, enums by name)."""
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def out(json_output: bool, data: Any, render: Callable[[Console], None]) -> None:
    """``data`` as JSON when asked, else ``render`` it for a person."""
    if json_output:
        emit_json(data)
    else:
        render(console())


def console() -> Console:
    # Made per call: CliRunner and pytest swap sys.stdout between commands.
    return Console(file=sys.stdout, soft_wrap=True, highlight=False)


def err_console() -> Console:
    return Console(file=sys.stderr, soft_wrap=True, highlight=False)


def enum_name(value: str, prefix: str) -> str:
    """``MODEL_VERSION_STATUS_APPROVED`` → ``approved``."""
    return value.removeprefix(prefix).lower()
