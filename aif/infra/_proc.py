"""Process plumbing shared by every component: pid files, ports, readiness waits, locks."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Popen objects of the daemons this process spawned: kept so they are not garbage
# collected (which warns "subprocess is still running") while they run detached.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class InfraError(RuntimeError):
    """A component could not be installed, started, reached or stopped.

    The message names the component and, where there is one, its log file.
    """

    def __init__(self, component: str, message: str, log_file: Path | None = None) -> None:
        where = f" (log: {log_file})" if log_file else ""
        super().__init__(f"{component}: {message}{where}")
        self.component = component
        self.log_file = log_file


class NotReady(Exception):
    """Raised by a readiness probe that should be retried until the deadline."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_ERROR_LINE = re.compile(r"\b(ERROR|FATAL|Exception|Error:)")


def log_tail(path: Path, since: int = 0, lines: int = 25) -> str:
    """The last lines of a log file written after byte offset since (empty when absent)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(since, f.tell() - 262144))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    all_lines = text.splitlines()
    tail = all_lines[-lines:]
    # A daemon that fails logs its reason once, then pages of orderly shutdown: keep the
    # reason (the first few error lines before the tail) so the error says why it exited.
    errors = [line for line in all_lines[:-lines] if _ERROR_LINE.search(line)][:5]
    if errors:
        return "\n".join([*errors, "[…]", *tail])
    return "\n".join(tail)


def _start_time(pid: int) -> str | None:
    """Process start time in clock ticks (field 22 of /proc/<pid>/stat); None when gone.

    Stored next to the pid so a recycled pid is never mistaken for our daemon.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # zombie: exited, waiting for its parent to reap it
        return None
    return fields[19]


def alive(pid: int) -> bool:
    """True while pid runs; reaps it first when it is our own exited child."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            _CHILDREN.pop(pid, None)
            return False
    return _start_time(pid) is not None


class Daemon:
    """One background process tracked by a pid file (``<pid>\\n<start time>``)."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.pid_file = workdir / f"{name}.pid"
        self.log_file = workdir / f"{name}.log"
        self.log_offset = 0

    def pid(self) -> int | None:
        """The pid of the tracked process when it still runs; clears a stale pid file."""
        try:
            pid_s, started = self.pid_file.read_text().split()[:2]
            pid = int(pid_s)
        except (OSError, ValueError):
            return None
        if alive(pid) and _start_time(pid) == started:
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        """Starts argv in its own session (survives this process), logging to log_file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.log_offset = log.tell()  # error messages quote this run's lines only
            log.write(f"\n=== {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
            log.flush()
            # start_new_session: not killed by the caller's Ctrl-C or exit, and its
            # pid is its process group, so stop() can reach its children too.
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                **_as_user(user),
            )
        _CHILDREN[proc.pid] = proc
        started = _start_time(proc.pid) or "0"
        self.pid_file.write_text(f"{proc.pid}\n{started}\n")
        return proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
        """Stops the tracked process: sig, then SIGKILL to its group after timeout.

        Returns False when nothing tracked was running.
        """
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if not wait_for(lambda: not alive(pid), timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            if not wait_for(lambda: not alive(pid), 10.0):
                raise InfraError(self.name, f"pid {pid} survived SIGKILL", self.log_file)
        # Children left behind (e.g. Triton's python stubs after a SIGKILL) share the
        # daemon's process group, which is ours alone since it has its own session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def _as_user(user: str | None) -> dict[str, Any]:
    """Popen arguments that drop root to ``user`` (postgres refuses to run as root)."""
    if user is None or os.geteuid() != 0:
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Polls check until it returns True or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_ready(
    component: str,
    probe: Callable[[], None],
    timeout: float,
    log_file: Path,
    pid: int | None = None,
    log_since: int | None = None,
) -> None:
    """Retries probe (which raises NotReady) until it passes; InfraError on timeout.

    When pid is given and that process exits, fails at once instead of waiting.
    Errors quote the log from byte log_since on (no quote when None: not our log).
    """

    def tail() -> str:
        return "" if log_since is None else ":\n" + log_tail(log_file, log_since)

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            probe()
            return
        except NotReady as exc:
            last = exc
        if pid is not None and not alive(pid):
            raise InfraError(component, f"process {pid} exited while starting{tail()}", log_file)
        if time.monotonic() >= deadline:
            raise InfraError(component, f"not ready after {timeout:.1f}s ({last}){tail()}", log_file)
        time.sleep(0.25)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (e.g. parallel pytest workers starting Kafka)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


ASYNC_THREAD = "aif.infra-probe"


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs a coroutine to completion from sync code, even inside a running loop.

    A fresh thread gets its own loop, so pytest-asyncio fixtures can call ensure_*.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=ASYNC_THREAD, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_quiet(
    argv: Sequence[str], component: str, log_file: Path, *, shown: Sequence[str] | None = None, **kwargs: Any
) -> None:
    """Runs a one-shot command, output appended to log_file; InfraError when it fails.

    ``shown`` is the command line to log and quote instead of argv (argv holding secrets).
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    shown = argv if shown is None else shown
    with log_file.open("ab") as log:
        start = log.tell()
        log.write(f"\n=== {time.strftime('%F %T')} {' '.join(shown)}\n".encode())
        log.flush()
        user = kwargs.pop("user", None)
        rc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            **_as_user(user),
            **kwargs,
        ).returncode
    if rc != 0:
        raise InfraError(component, f"{shown[0]} exited {rc}:\n{log_tail(log_file, start)}", log_file)
