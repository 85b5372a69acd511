"""Run untrusted model code (a TorchScript artifact is code) in a fresh, limited child process.

:func:`run` calls ``module:function(data, **args) -> bytes`` in a new Python process
(:mod:`libs.sandbox.child`) and returns its bytes, or raises :class:`SandboxRefused`
(an :class:`~libs.errors.InvalidArgument` naming the caller's field) saying which limit the
code broke. What is enforced, and how:

- **time**: a wall-clock limit on the work, counted from when the child has imported what
  it needs (so the cost of importing torch is not charged to the artifact); on expiry the
  child's whole process group is killed (SIGKILL). ``RLIMIT_CPU`` backs it (the kernel
  kills a child that spins past it even if this parent is stuck);
- **memory**: ``RLIMIT_DATA`` (heap, anonymous and private writable mappings: what an
  allocation costs). Not ``RLIMIT_AS``: importing torch reserves gigabytes of address
  space it never touches, so an address-space limit would refuse every model or none;
- **secrets**: the child gets a minimal environment (no ``AIF_*`` settings, tokens or
  keys, no proxies), its working directory is an empty temporary folder, stdin is
  closed, and the artifact's own prints go to stderr (stdout carries only the protocol);
- **privileges**: a child started by root becomes ``nobody`` (no groups, no new
  privileges) once it has read its input, so it cannot read a service's private folder,
  key or token file; a service running as its own unprivileged user keeps that user
  (:attr:`Outcome.unprivileged` says which);
- **network**: the child unshares a network namespace (``CLONE_NEWNET``: no interface
  but a loopback that is down) when the host lets it (root or CAP_SYS_ADMIN); elsewhere
  it runs without and says so in :attr:`Outcome.network_isolated`.

Limits and namespace are applied by the child itself, before it imports torch or reads
the artifact: ``preexec_fn`` is not safe in a parent with threads (a gRPC server has many).
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from libs import errors
from libs.errors import InvalidArgument

ROOT = Path(__file__).resolve().parents[2]
GIB = 1 << 30
DATA_FILE = "input.bin"
READY = b"ready\n"


@dataclass(frozen=True)
class Limits:
    """What one sandboxed call may use."""

    # Wall-clock seconds for the work itself (after the child's imports).
    wall_seconds: float = 20.0
    # CPU seconds for the whole child, imports included (torch alone takes a few).
    cpu_seconds: int = 60
    # RLIMIT_DATA of the child; torch's import itself uses about 0.8 GiB of it.
    memory_bytes: int = 2 * GIB
    # Wall-clock seconds the child may take to start and import (a slow disk, a cold cache).
    start_seconds: float = 120.0


class SandboxSettings(BaseModel):
    """The limits as settings fields (mixed into a service's settings model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Limits of the child process that loads and runs an uploaded model (its code is
    # untrusted; libs/sandbox): wall-clock seconds of the work (after torch's import),
    # killed past them.
    sandbox_wall_seconds: float = Field(default=20.0, gt=0, le=3600)
    # CPU seconds of the whole child (RLIMIT_CPU), the import included.
    sandbox_cpu_seconds: int = Field(default=60, ge=1, le=7200)
    # Memory of the child (RLIMIT_DATA, MiB); importing torch takes about 0.8 GiB of it.
    sandbox_memory_mib: int = Field(default=2048, ge=256, le=1 << 20)

    def sandbox_limits(self) -> Limits:
        return Limits(
            wall_seconds=self.sandbox_wall_seconds,
            cpu_seconds=self.sandbox_cpu_seconds,
            memory_bytes=self.sandbox_memory_mib << 20,
        )


class SandboxRefused(InvalidArgument):
    """The code under test broke a limit (``reason``: timeout, cpu, memory, crashed)."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(field, message)
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    data: bytes
    network_isolated: bool
    seconds: float
    # The child ran as nobody (it was started by root); False: as the service's own user.
    unprivileged: bool = False


def _size(n: int) -> str:
    return f"{n / GIB:g} GiB" if n >= GIB else f"{n >> 20} MiB"


def minimal_env() -> dict[str, str]:
    """The child's whole environment: nothing of the parent's (no AIF_*, tokens, proxies)."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        # One thread: the work cannot take every core of the host, and CPU time is wall time.
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def run(
    target: str,
    data: bytes,
    *,
    args: Mapping[str, Any] | None = None,
    limits: Limits = Limits(),  # noqa: B008 - frozen dataclass, safe as a default
    field: str = "artifact",
    what: str = "artifact forward pass",
    preload: Sequence[str] = ("torch",),
) -> Outcome:
    """Call ``target`` (``package.module:function``) on ``data`` in a sandboxed child.

    The function's typed errors (:mod:`libs.errors`) come back as the same types; a broken
    limit is :class:`SandboxRefused` naming ``field`` ("artifact forward pass exceeded 20 s").
    ``preload`` is imported before the wall-clock limit starts (torch takes seconds).
    """
    request = {"target": target, "args": dict(args or {}), "limits": asdict(limits), "preload": list(preload)}
    with _SLOTS, tempfile.TemporaryDirectory(prefix="aif-sandbox-") as work:
        Path(work, DATA_FILE).write_bytes(data)
        Path(work, "request.json").write_text(json.dumps(request))
        stderr_path = Path(work, "stderr.txt")
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-E", "-s", "-c", _BOOT, str(ROOT)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=work,
                env=minimal_env(),
                close_fds=True,
                start_new_session=True,  # its own process group: killed whole
            )
            try:
                out = _collect(proc, limits)
            except BaseException as exc:
                os.killpg(proc.pid, signal.SIGKILL)
                _reap(proc)
                if not isinstance(exc, _Expired):
                    raise
                if exc.phase == "start":
                    raise SandboxRefused(
                        field, "timeout", f"the sandbox did not start within {limits.start_seconds:g} s"
                    ) from None
                raise SandboxRefused(
                    field, "timeout", f"{what} exceeded {limits.wall_seconds:g} s (killed)"
                ) from None
            finally:
                if proc.stdout:
                    proc.stdout.close()
            status, cpu = _reap(proc)
        return _outcome(out, status, cpu, limits, field, what, stderr_path)


# At most one child per core at once: each holds ~0.8 GiB once torch is imported, and a
# burst of uploads must not take the host's memory (the others wait their turn).
_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


class _Expired(Exception):
    def __init__(self, phase: str) -> None:
        self.phase = phase


def _collect(proc: subprocess.Popen[bytes], limits: Limits) -> bytes:
    """Everything the child writes on stdout; raises _Expired past the start or work limit."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = bytearray()
    started = time.monotonic()
    deadline = started + limits.start_seconds
    ready_at: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Expired("start" if ready_at is None else "work")
            if not sel.select(left):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            if ready_at is None and buffer.startswith(READY):
                ready_at = time.monotonic()
                deadline = ready_at + limits.wall_seconds
    return bytes(buffer[len(READY) :]) if buffer.startswith(READY) else bytes(buffer)


def _reap(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Wait for the child; its exit status (negative: killed by that signal) and CPU seconds."""
    _, raw, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(raw)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def _outcome(
    out: bytes, status: int, cpu: float, limits: Limits, field: str, what: str, stderr_path: Path
) -> Outcome:
    reply: dict[str, Any] | None = None
    if out.strip():
        try:
            reply = json.loads(out)
        except ValueError:
            reply = None
    if reply is not None and reply.get("ok"):
        return Outcome(
            base64.b64decode(reply["data"]),
            bool(reply.get("netns")),
            float(reply["seconds"]),
            bool(reply.get("unprivileged")),
        )
    if reply is not None and reply.get("error"):
        raise _typed(reply["error"], field, limits, what)
    if status in (-signal.SIGXCPU, -signal.SIGKILL) and cpu >= limits.cpu_seconds:
        # The kernel's RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one.
        raise SandboxRefused(field, "cpu", f"{what} exceeded {limits.cpu_seconds} s of CPU time (killed)")
    tail = stderr_path.read_text(errors="replace")[-500:].strip()
    if "out of memory" in tail.lower() or "bad_alloc" in tail or "can't allocate memory" in tail:
        raise SandboxRefused(field, "memory", f"{what} exceeded {_size(limits.memory_bytes)} memory")
    raise SandboxRefused(
        field, "crashed", f"{what} crashed the sandbox (exit status {status}){': ' + tail if tail else ''}"
    )


def _typed(error: Mapping[str, Any], field: str, limits: Limits, what: str) -> errors.AifError:
    kind, message = str(error.get("type", "")), str(error.get("message", ""))
    if kind == "memory":
        return SandboxRefused(field, "memory", f"{what} exceeded {_size(limits.memory_bytes)} memory")
    if kind == "InvalidArgument":
        named = str(error.get("field") or field)
        return InvalidArgument(named, message.removeprefix(f"{named}: "))
    cls = getattr(errors, kind, None)
    if (
        isinstance(cls, type)
        and issubclass(cls, errors.AifError)
        and kind
        not in (
            "Unauthenticated",
            "PermissionDenied",
            "StatusError",
        )
    ):
        return cls(message)
    return SandboxRefused(field, "crashed", f"{what} failed: {message}")


# The child's first lines, before anything is imported from the repository: put the
# repository on sys.path (-E ignores PYTHONPATH) and hand over to libs.sandbox.child.
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from libs.sandbox.child import main; main()"

__all__ = ["Limits", "Outcome", "SandboxRefused", "SandboxSettings", "minimal_env", "run"]
