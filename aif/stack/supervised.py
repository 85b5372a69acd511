"""The stack under supervisord: a crashed service is restarted, with backoff, as
Kubernetes would restart its pod.

``aif up`` runs this. :class:`SupervisedStack` writes one supervisord configuration
(``<run_dir>/supervisord.conf``: one ``[program:<service>]`` each, with the environment
:meth:`aif.stack.Stack.environment` gives it) and runs supervisord in the foreground as a
child process; stopping it stops every service (SIGTERM to each process group, so each
drains, then SIGKILL after ``stopwaitsecs``).

Restarts are supervisord's (``autorestart=true``): any exit, a crash (kill -9) or a
service that stopped itself because a background worker died (exit 70, see
:mod:`libs.runtime`), starts the process again. A process that does not stay up for
``startsecs`` counts as a failed start, and supervisord waits 1 s, then 2 s, 3 s... before
each further try, up to ``startretries`` tries, then gives up (state FATAL), much as a
CrashLoopBackOff; a process that was up longer is restarted at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from aif.stack import SERVICES, Stack
from libs.errors import ConfigError, Unavailable
from libs.rpc.healthcheck import check

# A service must stay up this long for its start to count; a crash sooner is backed off.
START_SECONDS = 10
# Failed starts in a row before supervisord gives a service up (1+2+...+9 s of backoff).
START_RETRIES = 10
# SIGTERM, then this long to drain and close, then SIGKILL.
STOP_WAIT_SECONDS = 30


def _quoted(key: str, value: str) -> str:
    """``value`` as supervisord's ``environment=`` reads it back: quoted (non-POSIX shlex:
    no escapes, so with the quote character it does not contain), ``%`` doubled (the file
    is %-interpolated). Refused when it cannot be written so (ConfigError naming ``key``)."""
    quote = '"' if '"' not in value else "'"
    edges = value[:1] + value[-1:]
    if quote in value or "\n" in value or any(c in "'\"" for c in edges):
        raise ConfigError(
            f"{key}: supervisord cannot pass a value with both quote kinds, a newline, "
            "or a quote at either end"
        )
    return quote + value.replace("%", "%%") + quote


def program(name: str, env: Mapping[str, str], log_path: Path, python: str = sys.executable) -> str:
    """The ``[program:<name>]`` section that runs service ``name``."""
    environment = ",".join(f"{key}={_quoted(key, value)}" for key, value in sorted(env.items()))
    return "\n".join(
        [
            f"[program:{name}]",
            f"command={python} -m services.{name}",
            f"directory={Path.cwd()}",
            f"environment={environment}",
            "autostart=true",
            "autorestart=true",
            f"startsecs={START_SECONDS}",
            f"startretries={START_RETRIES}",
            "stopsignal=TERM",
            f"stopwaitsecs={STOP_WAIT_SECONDS}",
            # The whole process group: a service's helper processes go with it.
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={log_path}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=2",
            "",
        ]
    )


@dataclass
class SupervisedStack:
    """``stack``'s services under one supervisord, its files (configuration, socket, its
    own log) in ``run_dir``; the services log to ``stack.log_dir`` as before."""

    stack: Stack
    run_dir: Path
    names: list[str] = field(default_factory=lambda: list(SERVICES))
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "supervisor.sock"

    def config(self) -> str:
        sections = [
            "\n".join(
                [
                    "[supervisord]",
                    "nodaemon=true",
                    f"logfile={self.run_dir / 'supervisord.log'}",
                    f"pidfile={self.run_dir / 'supervisord.pid'}",
                    f"childlogdir={self.run_dir}",
                    "",
                    # supervisorctl and status queries, on a socket only this user may open.
                    "[unix_http_server]",
                    f"file={self.socket_path}",
                    "chmod=0700",
                    "",
                    "[rpcinterface:supervisor]",
                    "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                    "",
                    "[supervisorctl]",
                    f"serverurl=unix://{self.socket_path}",
                    "",
                ]
            )
        ]
        sections += [
            program(name, self.stack.environment(name), self.stack.log_dir / f"{name}.log")
            for name in self.names
        ]
        return "\n".join(sections)

    def start(self, timeout: float = 90.0) -> None:
        """Write the configuration, start supervisord, wait until every service is SERVING."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.stack.log_dir.mkdir(parents=True, exist_ok=True)
        # Secrets (tokens, the privacy salt) are in the environment lines: owner only.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.config())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        # Services' tokens are short-lived: re-minted here while supervisord runs them.
        self.stack.start_refresher(self.names)

    def rpc(self) -> Any:
        """supervisord's XML-RPC interface (``supervisor.getProcessInfo(name)``...)."""
        return xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=SupervisorTransport(serverurl=f"unix://{self.socket_path}")
        )

    def pid(self, name: str) -> int:
        """Service ``name``'s current process id (0 while it is not running)."""
        return int(self.rpc().supervisor.getProcessInfo(name)["pid"])

    def target(self, name: str) -> str:
        return self.stack.target(name)

    def wait_healthy(self, timeout: float, names: Iterable[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.names if names is None else names)
        tls = self.stack.client_tls()
        while pending:
            if self.process is not None and self.process.poll() is not None:
                raise Unavailable(
                    f"supervisord exited with {self.process.returncode}; see {self.run_dir / 'supervisord.log'}"
                )
            pending = [n for n in pending if not check(self.target(n), timeout=0.5, tls=tls)]
            if pending and time.monotonic() > deadline:
                raise Unavailable(
                    f"not healthy after {timeout:.0f}s: {', '.join(pending)}; logs in {self.stack.log_dir}"
                )
            if pending:
                time.sleep(0.2)

    def wait(self) -> int:
        """Until supervisord ends (it runs until stopped); its exit code."""
        assert self.process is not None
        return self.process.wait()

    def stop(self, timeout: float = STOP_WAIT_SECONDS + 15) -> int | None:
        """Stop supervisord, which stops every service first; its exit code."""
        self.stack.stop_refresher()
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()
