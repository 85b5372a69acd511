"""The start/reuse/stop life cycle that every component shares, and the handle base."""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from ._proc import Daemon, InfraError, file_lock, port_open, wait_ready
from .config import InfraConfig


class Component(ABC):
    """One piece of infrastructure: how to start it, probe it and stop it.

    Subclasses set ``name`` and implement :meth:`port`, :meth:`probe`, :meth:`spawn`.
    """

    name: str
    stop_signal: int = signal.SIGTERM
    default_timeout: float = 60.0

    def __init__(self, config: InfraConfig) -> None:
        self.config = config
        self.dir = config.dir(self.name)
        self.daemon = Daemon(self.name, self.dir)

    @property
    @abstractmethod
    def port(self) -> int:
        """The port whose listener means "something is already running"."""

    @property
    def other_ports(self) -> list[int]:
        """Further ports the daemon binds; checked free before starting it."""
        return []

    @abstractmethod
    def probe(self) -> None:
        """One readiness check: raises NotReady to be retried, InfraError to give up."""

    @abstractmethod
    def spawn(self) -> int:
        """Prepares files and starts the daemon; returns its pid."""

    def endpoint(self) -> str:
        return f"{self.config.host}:{self.port}"

    def running(self) -> bool:
        return port_open(self.config.host, self.port)

    def ensure(self, timeout: float | None = None) -> bool:
        """Reuses what answers on the port, else starts a daemon; True when started here."""
        timeout = timeout or self.default_timeout
        with file_lock(self.dir / ".lock"):
            tracked = self.daemon.pid()
            if self.running() or tracked is not None:
                # Already up (or booting under our pid file): wait for it, own nothing.
                wait_ready(
                    self.name,
                    self.probe,
                    timeout,
                    self.daemon.log_file,
                    tracked,
                    log_since=None if tracked is None else 0,
                )
                return False
            self._start(timeout)
            return True

    def start(self, timeout: float | None = None) -> None:
        """Starts a daemon; InfraError when something already answers on the port."""
        with file_lock(self.dir / ".lock"):
            if self.running() or self.daemon.pid() is not None:
                raise InfraError(self.name, f"already running on {self.endpoint()}")
            self._start(timeout or self.default_timeout)

    def _start(self, timeout: float) -> None:
        busy = [p for p in self.other_ports if port_open(self.config.host, p)]
        if busy:
            # The daemon would die (or half-start) on a taken port: say so up front.
            raise InfraError(
                self.name,
                f"port(s) {busy} on {self.config.host} already in use "
                "by another process; free them or set the AIF_* port variables",
            )
        pid = self.spawn()
        try:
            wait_ready(
                self.name, self.probe, timeout, self.daemon.log_file, pid, log_since=self.daemon.log_offset
            )
        except BaseException:
            self.daemon.stop(self.stop_signal, timeout=10)
            raise

    def stop(self, timeout: float = 30.0) -> bool:
        """Stops the daemon this tool started (pid file); False when there was none."""
        with file_lock(self.dir / ".lock"):
            return self.daemon.stop(self.stop_signal, timeout)

    def status(self) -> str:
        """One line: running (managed pid / external) or stopped."""
        pid = self.daemon.pid()
        if pid is not None:
            state = f"running (pid {pid}, started by aif.infra)"
        elif self.running():
            state = "running (external: not started by aif.infra)"
        else:
            state = "stopped"
        return f"{self.name:<9} {state:<48} {self.endpoint()}  log={self.daemon.log_file}"


@dataclass(kw_only=True)
class Handle:
    """A reachable component. ``started`` is True when this handle's ensure started it.

    ``stop()`` only stops what this handle started, so a fixture's teardown leaves
    alone an instance that was already running (``make up``). ``stop_server()`` and
    ``start_server()`` stop and start an aif.infra-managed instance on purpose (outage
    and recovery tests); ``started`` keeps its meaning, so teardown restores the state
    that was there before the handle.
    """

    started: bool
    log_file: Path
    component: Component = field(repr=False, compare=False)

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the instance if, and only if, this handle started it."""
        if self.started:
            self.component.stop(timeout)
            self.started = False

    def stop_server(self, timeout: float = 30.0) -> None:
        """Stops the running instance even if it was reused (must be aif.infra-managed)."""
        if not self.component.stop(timeout) and self.component.running():
            raise InfraError(
                self.component.name,
                f"{self.component.endpoint()} was not started by aif.infra; cannot stop it",
            )

    def start_server(self, timeout: float | None = None) -> None:
        """Starts the instance again after stop_server() (no-op when it already runs)."""
        self.component.ensure(timeout)

    def restart_server(self, timeout: float | None = None) -> None:
        self.stop_server()
        self.start_server(timeout)

    @property
    def managed(self) -> bool:
        """True when the running instance was started by aif.infra (any process)."""
        return self.component.daemon.pid() is not None

    def is_running(self) -> bool:
        """True when something answers on the component's port."""
        return self.component.running()
