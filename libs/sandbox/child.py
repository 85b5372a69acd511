"""The sandboxed side of :func:`libs.sandbox.run`: limit itself, then run the one call.

Reads ``request.json`` and ``input.bin`` from its working directory (a fresh temporary
folder), applies the limits and the network namespace, imports the target, writes
``ready`` on the protocol channel, calls the target and writes one JSON reply. The
protocol channel is a private copy of stdout; fd 1 is pointed at stderr before the
target runs, so whatever the artifact prints cannot forge a reply. stdin is /dev/null.
"""

from __future__ import annotations

import base64
import ctypes
import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

CLONE_NEWNET = 0x40000000
_FILE_BYTES = 64 << 20
# How allocation failures read once RLIMIT_DATA is hit (Python, glibc, PyTorch's allocator).
_MEMORY_WORDS = ("can't allocate memory", "out of memory", "bad_alloc", "cannot allocate memory")


def _limit(limits: dict[str, Any]) -> None:
    memory = int(limits["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    cpu = int(limits["cpu_seconds"])
    # SIGXCPU at the soft limit, SIGKILL a little later should it be caught.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # It writes nothing but its stderr (a file in its folder): keep that small.
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_BYTES, _FILE_BYTES))


def _unshare_network() -> bool:
    """A network namespace of its own (no route anywhere); False where not permitted."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(CLONE_NEWNET) == 0
    except (OSError, AttributeError):
        return False


def _reply(channel: BinaryIO, body: dict[str, Any]) -> None:
    channel.write(json.dumps(body).encode())
    channel.flush()


def _is_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or any(w in str(exc).lower() for w in _MEMORY_WORDS)


def main() -> None:
    request = json.loads(Path("request.json").read_text())
    data = Path("input.bin").read_bytes()
    _limit(request["limits"])
    netns = _unshare_network()
    # The protocol channel: a private duplicate of stdout; fd 1 now goes to stderr.
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        for name in request["preload"]:
            importlib.import_module(name)
        module_name, _, function_name = request["target"].partition(":")
        function = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it typed
        _reply(channel, {"ok": False, "error": {"type": "import", "message": f"{type(exc).__name__}: {exc}"}})
        return
    channel.write(b"ready\n")
    channel.flush()
    started = time.monotonic()
    try:
        result = function(data, **request["args"])
    except BaseException as exc:  # noqa: BLE001 - everything the artifact does is reported
        if _is_memory(exc):
            error = {"type": "memory", "message": str(exc)[:300]}
        else:
            error = {
                "type": type(exc).__name__,
                "field": getattr(exc, "field", ""),
                "message": getattr(exc, "message", f"{type(exc).__name__}: {exc}"),
            }
        _reply(channel, {"ok": False, "error": error})
        return
    _reply(
        channel,
        {
            "ok": True,
            "data": base64.b64encode(result).decode(),
            "netns": netns,
            "seconds": time.monotonic() - started,
        },
    )
