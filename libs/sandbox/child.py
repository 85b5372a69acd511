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
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
# The user and group a child started by root becomes: it then reads no service's 0700
# folder, key or token file, and writes nothing the service owns.
NOBODY = 65534
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


def blocked_ancestor(path: Path) -> Path | None:
    """The outermost folder above ``path`` that others may not enter (no o+x), if any
    (``/root`` above a pyenv interpreter; aif.multihost reveals it the same way)."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & 0o001:
            return parent
    return None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def _reveal_interpreter(stage: Path) -> None:
    """Where the interpreter's own library sits under a folder only root enters (``/root``
    under pyenv), give the child a private view in which that folder is an empty tmpfs
    holding the interpreter's prefix and nothing else: nobody can then import lazily
    (torch does, mid-load), and root's home is hidden from the untrusted code."""
    prefix = Path(os.path.realpath(sys.base_prefix))
    blocked = blocked_ancestor(prefix)
    if blocked is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing leaks back to the host's mounts
    stage.mkdir()
    _mount(str(prefix), str(stage), None, MS_BIND | MS_REC)
    _mount("tmpfs", str(blocked), "tmpfs", 0, "mode=755,size=1m")
    prefix.mkdir(parents=True, mode=0o755)
    _mount(str(stage), str(prefix), None, MS_BIND | MS_REC)


def _readable_as(uid: int, paths: list[str]) -> bool:
    """Whether ``uid`` reads and enters every path (tried with the effective id only, which
    root takes back)."""
    os.seteuid(uid)
    try:
        return all(os.access(p, os.R_OK | os.X_OK, effective_ids=True) for p in paths)
    finally:
        os.seteuid(0)


def _drop_privileges() -> bool:
    """Root becomes nobody for good (no groups, no way back, no setuid gain); True when done.

    Stays root (False) where nobody could not run the code: a checkout or virtualenv that
    others may not read. A service running as its own unprivileged user keeps that user:
    the kernel gives it no other to become."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if os.geteuid() != 0:
        return False
    try:
        _reveal_interpreter(Path("stage").absolute())
    except OSError:
        return False
    needed = [p for p in sys.path if p and os.path.isdir(p)]
    if not _readable_as(NOBODY, needed):
        return False
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    return True


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
    # Imports done (the interpreter's own library may sit in a folder only root enters):
    # from here on the untrusted code runs, as nobody where the child was started by root.
    unprivileged = _drop_privileges()
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
            "unprivileged": unprivileged,
            "seconds": time.monotonic() - started,
        },
    )
