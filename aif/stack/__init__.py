"""Starts the seven services as separate OS processes and stops them cleanly.

Used by ``make demo`` and by the tests that need real service processes. Each
service gets its own gRPC and metrics port (offset by ``port_offset`` so tests
can run beside a demo) and logs to ``<log_dir>/<service>.log``.

Offsets in use keep the gRPC ports (50051-50066 + offset) above the kernel's ephemeral
range (32768-60999), where an outgoing connection of any process may hold a port at the
moment a service binds it: fuzz 11000, hostile topics 11200, services tests 11400 and
11500, service wiring 11600, e2e loop 11800, demo 12000, bench loop 12200, bench
pipeline 12400, chaos 12600, loop with mutual TLS 13200, mutual-TLS attacks 13400 (each
stack spans 16 ports).

Services run with authentication on: the stack makes sure the development key pair
exists (``auth``, default ``build/auth`` or ``AIF_AUTH_DIR``) and gives each service only
its own credentials folder (``<auth>/services/<name>/``: the public key, the revocation
list and, for a service that calls others, its token file), as a Kubernetes Secret
would; no service is pointed at the folder of the private key. Callers of the stack get
tokens from :meth:`Stack.metadata`.

With ``tls`` on (``AIF_STACK_TLS=mtls make demo``) every gRPC port speaks mutual TLS only: the stack
makes a development CA (``pki_dir``, default ``<auth>/tls``) and a certificate per service,
which each service presents as a server and as a client of the others; callers of the
stack get theirs from :meth:`Stack.client_tls`.

The services are given ``AIF_KAFKA_ALLOW_PLAINTEXT=1`` (the open local broker) unless the
stack's ``env`` names a Kafka transport with TLS (``AIF_KAFKA_SECURITY_PROTOCOL=SASL_SSL``,
as :func:`aif.loop.factory.fresh_factory` does with ``kafka_sasl``): then no service gets
it, not even from this process's environment (:meth:`Stack.process_env`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from libs.auth import DevAuth
from libs.auth.dev import SERVICE_TOKEN_TTL_S, TOKEN_FILE, service_grants
from libs.auth.tls import DevPki
from libs.auth.tokens import PRIVATE_KEY_FILE
from libs.bus.security import CLEARTEXT
from libs.errors import ConfigError, Unavailable
from libs.rpc import ClientTls
from libs.rpc.healthcheck import check

log = logging.getLogger(__name__)

# name → (default gRPC port, default metrics port); the settings classes hold the
# same defaults, this table only lets the supervisor avoid importing every service.
SERVICES: dict[str, tuple[int, int]] = {
    "ingestion": (50051, 9101),
    "featurestore": (50052, 9102),
    "trainer": (50053, 9103),
    "evaluator": (50054, 9104),
    "registry": (50055, 9105),
    "gateway": (50056, 9106),
    "monitor": (50057, 9107),
}


@dataclass
class RunningService:
    name: str
    grpc_port: int
    metrics_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


# Which other services each one calls, by the name of its setting.
_TARGETS: dict[str, dict[str, str]] = {
    "trainer": {
        "FEATURESTORE_TARGET": "featurestore",
        "REGISTRY_TARGET": "registry",
        "MONITOR_TARGET": "monitor",
    },
    "evaluator": {"FEATURESTORE_TARGET": "featurestore", "REGISTRY_TARGET": "registry"},
    "gateway": {"FEATURESTORE_TARGET": "featurestore", "REGISTRY_TARGET": "registry"},
    "monitor": {"REGISTRY_TARGET": "registry"},
    # Lifecycle events are confirmed with their owners (libs.lifecycle.confirm).
    "registry": {"EVALUATOR_TARGET": "evaluator", "MONITOR_TARGET": "monitor"},
}
# Services that call others with a service token of their own (subject and role
# ``svc-<name>``: libs.auth.permissions grants each only what its clients call); the others
# get no token at all. tests/unit/test_compose.py checks this against the settings classes.
CALLERS = ("trainer", "evaluator", "registry", "gateway", "monitor")
# Each service's grants, for its token (whoever mints it: the stack, ``aif token service``).
SERVICE_ROLES: dict[str, dict[str, list[str]]] = {name: service_grants(name) for name in SERVICES}
# A log line at INFO or DEBUG, text or JSON (libs.runtime.configure_logging); Stack.troubles
# leaves those out.
_INFO_LINE = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|DEBUG) |\{.*"level": "(INFO|DEBUG)")')
# The local-development permission to use Kafka without TLS (libs.bus.security.require_kafka_tls).
ALLOW_PLAINTEXT = "AIF_KAFKA_ALLOW_PLAINTEXT"
# Services that hash personal data, the only ones given the privacy key (AIF_PRIVACY_SALT).
HASHERS = ("ingestion", "gateway")


def own_env(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """What of ``env`` service ``name`` may see: shared ``AIF_*`` settings and its own
    ``AIF_<NAME>_*``, never another service's (e.g. the gateway's key to Triton), nor the
    privacy key unless ``name`` hashes personal data."""
    others = tuple(f"AIF_{other.upper()}_" for other in SERVICES if other != name)
    return {
        key: value
        for key, value in env.items()
        if not key.startswith(others) and (key != "AIF_PRIVACY_SALT" or name in HASHERS)
    }


def tls_from_env() -> bool:
    """``AIF_STACK_TLS``: "mtls" runs the stack with mutual TLS everywhere; "" or "off" not."""
    value = os.environ.get("AIF_STACK_TLS", "").strip().lower()
    if value not in ("", "off", "mtls"):
        raise ConfigError(f"AIF_STACK_TLS must be mtls or off (got {value!r})")
    return value == "mtls"


def data_env(name: str, root: Path) -> dict[str, str]:
    """Settings that put a service's state under ``root`` (a fresh root: a fresh factory)."""

    def sqlite(path: Path) -> str:
        return f"sqlite:///{path}"

    prefix = f"AIF_{name.upper()}_"
    dirs = {
        "ingestion": {"DATA_DIR": str(root / "raw")},
        "featurestore": {"FEAST_REPO": str(root / "feast"), "DATA_DIR": str(root / "featurestore")},
        "trainer": {"DATABASE_URL": sqlite(root / "trainer" / "jobs.db")},
        "evaluator": {"DATABASE_URL": sqlite(root / "evaluator" / "reports.db")},
        "registry": {
            "DATABASE_URL": sqlite(root / "registry" / "registry.db"),
            "ARTIFACT_ROOT": str(root / "registry" / "artifacts"),
            "EXPORT_ROOT": str(root / "registry" / "exports"),
        },
        "monitor": {"DATABASE_URL": sqlite(root / "monitor" / "monitor.db")},
        "gateway": {},
    }[name]
    # No folders made here: each store creates its own (libs.sql).
    return {prefix + key: value for key, value in dirs.items()}


@dataclass
class Stack:
    """The seven (or a chosen subset of) services, each in its own process.

    ``data_root``, when given, holds every service's state (databases, datasets, Feast
    repo, artifacts); otherwise each service uses its defaults under ``build/``.
    Services reach each other on this stack's ports and call each other with a token
    each (subject and role ``svc-<name>``) minted here and re-minted before it expires.
    """

    log_dir: Path
    port_offset: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    running: dict[str, RunningService] = field(default_factory=dict)
    auth: DevAuth = field(default_factory=DevAuth.default)
    data_root: Path | None = None
    # Lifetime of the services' tokens; the stack re-mints them at a third of it.
    token_ttl_s: float = SERVICE_TOKEN_TTL_S
    _refresher: threading.Thread | None = field(default=None, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    # Services started again by the restarter (start_restarter), by name.
    restarts: Counter[str] = field(default_factory=Counter, init=False)
    _restarter: threading.Thread | None = field(default=None, init=False, repr=False)
    _restarter_off: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    # Mutual TLS on every port and every call between services (certificates under pki_dir);
    # fresh factories (make demo) take it from AIF_STACK_TLS (tls_from_env).
    tls: bool = False
    pki_dir: Path | None = None

    @property
    def pki(self) -> DevPki:
        return DevPki(self.pki_dir or self.auth.directory / "tls").ensure()

    def client_tls(self, name: str = "stack-operator") -> ClientTls | None:
        """What a caller of this stack (``name`` in its certificate) passes to
        ``libs.rpc.channel``: None when the stack runs in plaintext."""
        return self.pki.client(name) if self.tls else None

    def target(self, name: str) -> str:
        return f"127.0.0.1:{SERVICES[name][0] + self.port_offset}"

    def wiring(self, name: str) -> dict[str, str]:
        """The environment that connects service ``name`` to the rest of this stack."""
        prefix = f"AIF_{name.upper()}_"
        env = {prefix + key: self.target(other) for key, other in _TARGETS.get(name, {}).items()}
        if name in CALLERS:
            env[prefix + "SERVICE_TOKEN_FILE"] = str(self.auth.service_dir(name) / TOKEN_FILE)
        if self.data_root is not None:
            env.update(data_env(name, self.data_root))
        return env

    def metadata(
        self, subject: str = "dev-admin", roles: Mapping[str, Iterable[str]] | None = None
    ) -> tuple[tuple[str, str], ...]:
        """Call metadata with a fresh token (admin for every use case unless ``roles``)."""
        return self.auth.metadata(subject, roles)

    def ports(self, name: str) -> tuple[int, int]:
        """Service ``name``'s gRPC and metrics ports on this stack."""
        grpc_port, metrics_port = (p + self.port_offset for p in SERVICES[name])
        return grpc_port, metrics_port

    def credentials(self, name: str) -> Path:
        """Mints service ``name``'s credentials folder (a fresh token for a caller)."""
        return self.auth.mint_service(
            name, SERVICE_ROLES[name] if name in CALLERS else None, ttl_seconds=self.token_ttl_s
        )

    def refresh_tokens(self, names: Iterable[str] | None = None) -> None:
        """Re-mints the token of each caller among ``names`` (default: the running ones);
        the services re-read their token file on change (libs.settings.token_file)."""
        if not (self.auth.directory / PRIVATE_KEY_FILE).exists():
            # No issuer here (its folder was handed off): never mint with a new key pair.
            log.warning("no signing key in %s: service tokens not refreshed", self.auth.directory)
            return
        for name in list(self.running) if names is None else names:
            if name in CALLERS:
                self.credentials(name)

    def start_refresher(self, names: Iterable[str] | None = None) -> None:
        """Re-mints the tokens of ``names`` (default: the running services) at a third of
        their lifetime, in a daemon thread, until :meth:`stop_refresher` (:meth:`stop`):
        tokens live an hour, a stack may run for days."""
        if self._refresher is not None and self._refresher.is_alive():
            return
        self._stopping.clear()
        chosen = None if names is None else list(names)

        def loop() -> None:
            while not self._stopping.wait(max(1.0, self.token_ttl_s / 3)):
                try:
                    self.refresh_tokens(chosen)
                except Exception:  # noqa: BLE001 - keep refreshing; the next round may work
                    log.exception("service tokens not refreshed")

        self._refresher = threading.Thread(target=loop, name="stack-token-refresher", daemon=True)
        self._refresher.start()

    def start_restarter(self, say: Callable[[str], None] = log.warning, interval_s: float = 0.5) -> None:
        """Start again any service that exits on its own (a fatal error is an exit for a
        restart, by design), as supervisord does under ``aif up`` and Kubernetes in a
        cluster: in a daemon thread, until :meth:`stop`. A restart that fails (what it
        needs is down) is tried again on the next round; :attr:`restarts` counts them."""
        if self._restarter is not None and self._restarter.is_alive():
            return
        self._restarter_off.clear()

        def loop() -> None:
            while not self._restarter_off.wait(interval_s):
                for name, svc in list(self.running.items()):
                    code = svc.process.poll()
                    if code is None or self._restarter_off.is_set():
                        continue
                    say(f"    {name} exited on its own with {code}; restarting it (see {svc.log_path})")
                    self.restarts[name] += 1
                    try:
                        self.start([name], timeout=120)
                    except Exception as exc:  # noqa: BLE001 - tried again next round
                        say(f"    restarting {name} failed: {exc}")

        self._restarter = threading.Thread(target=loop, name="stack-restarter", daemon=True)
        self._restarter.start()

    def stop_restarter(self) -> None:
        self._restarter_off.set()
        if self._restarter is not None:
            # A restart in progress waits for its service's health: up to its timeout.
            self._restarter.join(timeout=130)
            self._restarter = None

    def stop_refresher(self) -> None:
        self._stopping.set()
        if self._refresher is not None:
            self._refresher.join(timeout=5)
            self._refresher = None

    def environment(self, name: str) -> dict[str, str]:
        """What service ``name``'s process gets on top of this process's environment: its
        own credentials folder, the wiring, this stack's ``env`` and its ports (also used by
        :mod:`aif.stack.supervised` to write a supervisor's program)."""
        grpc_port, metrics_port = self.ports(name)
        return own_env(
            name,
            {
                # A local stack runs on the open local broker: PLAINTEXT is local development,
                # said explicitly (libs.bus.security.require_kafka_tls); ``env`` may override.
                # On a broker with TLS (``env`` names its protocol) the flag is not given.
                **({} if self.kafka_tls else {ALLOW_PLAINTEXT: "1"}),
                **self.auth.env(self.credentials(name)),
                **(self.pki.env(name) if self.tls else {}),
                **self.wiring(name),
                **self.env,
                f"AIF_{name.upper()}_GRPC_PORT": str(grpc_port),
                f"AIF_{name.upper()}_METRICS_PORT": str(metrics_port),
                "PYTHONUNBUFFERED": "1",
            },
        )

    @property
    def kafka_tls(self) -> bool:
        """Whether this stack's ``env`` puts the services on a Kafka transport with TLS."""
        return self.env.get("AIF_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") not in CLEARTEXT

    def process_env(self, name: str) -> dict[str, str]:
        """The whole environment service ``name``'s process starts with: this process's
        (what ``name`` may see of it) under :meth:`environment`. With Kafka over TLS, no
        plaintext permission leaks in from this process's environment either."""
        inherited = own_env(name, os.environ)
        if self.kafka_tls:
            inherited.pop(ALLOW_PLAINTEXT, None)
        return {**inherited, **self.environment(name)}

    def start(self, names: Iterable[str] = SERVICES, timeout: float = 60.0) -> None:
        names = list(names)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            grpc_port, metrics_port = self.ports(name)
            env = self.process_env(name)
            log_path = self.log_dir / f"{name}.log"
            with log_path.open("ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.running[name] = RunningService(name, grpc_port, metrics_port, proc, log_path)
        try:
            self.wait_healthy(timeout, names)
        except BaseException:
            # One service failing must not leave the others started with it running, unowned,
            # on their ports. Only those: a service restarted alone that fails (say, while
            # Kafka is down) must not take the rest of a running stack with it.
            if set(names) >= set(self.running):
                self.stop()
            else:
                self._terminate(names)
            raise
        self.start_refresher()

    def wait_healthy(self, timeout: float, names: Iterable[str] | None = None) -> None:
        """Until every service of ``names`` (default: all running) is SERVING."""
        deadline = time.monotonic() + timeout
        pending = {n: self.running[n] for n in (self.running if names is None else names)}
        tls = self.client_tls()
        while pending:
            for name, svc in list(pending.items()):
                if svc.process.poll() is not None:
                    raise Unavailable(f"{name} exited with {svc.process.returncode}; see {svc.log_path}")
                if check(svc.target, timeout=0.5, tls=tls):
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise Unavailable(
                    f"not healthy after {timeout:.0f}s: {', '.join(pending)}; logs in {self.log_dir}"
                )
            if pending:
                time.sleep(0.2)

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 15.0) -> int:
        """Sends ``sig`` to one service (default: kill -9, as a crash) and waits for it to end;
        returns its exit code. The service stays listed, so :meth:`restart` starts it again."""
        svc = self.running[name]
        if svc.process.poll() is None:
            svc.process.send_signal(sig)
        return svc.process.wait(timeout)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Starts one service again (after :meth:`kill`, or after it exited on its own) with
        the same ports, wiring and state, and waits until it is SERVING."""
        svc = self.running.get(name)
        if svc is not None and svc.process.poll() is None:
            self.kill(name, signal.SIGTERM)
        self.start([name], timeout=timeout)

    def apply_usecases(
        self, files: Iterable[Path] | None = None, *, reason: str = "", timeout: float = 180.0
    ) -> list[str]:
        """Onboard use-case specs (default: the shipped ones, ``deploy/usecases``) into this
        running stack as any user does (``aif usecase apply``: the registry's catalogue),
        then wait until every service of the stack has taken each up. Returns their names."""
        from aif.cli.usecase import apply_files
        from libs.usecase import DEFAULT_DIR, spec_files

        paths = list(files) if files is not None else spec_files(DEFAULT_DIR)
        replies = apply_files(
            self.target("registry"),
            paths,
            self.metadata("stack-operator"),
            reason=reason or "onboarded by the stack",
            tls=self.client_tls(),
        )
        names = [r.use_case.use_case for r in replies]
        self.wait_usecases(names, timeout)
        return names

    def wait_usecases(self, names: Iterable[str], timeout: float = 180.0) -> None:
        """Until each service reports health ``usecase/<name>`` SERVING for every name (it
        knows the use case and has set it up: raw topic consumed, Feast view applied, ...)."""
        from libs.usecase.catalogue import health_name

        services = list(self.running) or list(SERVICES)
        pending = {(svc, name) for svc in services for name in names}
        deadline = time.monotonic() + timeout
        tls = self.client_tls()
        while pending:
            pending = {
                (svc, name)
                for svc, name in pending
                if not check(self.target(svc), health_name(name), tls=tls)
            }
            if not pending:
                return
            if time.monotonic() > deadline:
                late = ", ".join(f"{svc}:{name}" for svc, name in sorted(pending))
                raise Unavailable(
                    f"use cases not taken up after {timeout:.0f}s: {late}; logs in {self.log_dir}"
                )
            time.sleep(0.3)

    def troubles(self, lines: int = 12) -> str:
        """What each service said that was not INFO (its last ``lines`` such lines) and
        whether it has exited: printed when a run fails, since the logs stay on the host
        that ran it (a CI machine) and a failure message alone rarely names the service."""
        out = []
        for name, svc in self.running.items():
            code = svc.process.poll()
            state = "running" if code is None else f"exited {code}"
            if self.restarts[name]:
                state += f"; restarted {self.restarts[name]}x"
            try:
                text = svc.log_path.read_text(errors="replace").splitlines()
            except OSError as exc:
                text = [f"(log unreadable: {exc})"]
            # A log line starts "<date> <time> <LEVEL> <service> ..."; tracebacks follow theirs.
            worrying = [line for line in text if not _INFO_LINE.match(line)]
            out.append(f"--- {name} ({state}; {svc.log_path})")
            out += [f"    {line[:400]}" for line in worrying[-lines:]] or ["    (nothing above INFO)"]
        return "\n".join(out)

    def stop(self, timeout: float = 15.0) -> dict[str, int]:
        """SIGTERM every service, wait for each, SIGKILL stragglers; returns exit codes."""
        self.stop_restarter()
        self.stop_refresher()
        codes = self._terminate(list(self.running), timeout)
        self.running.clear()
        return codes

    def _terminate(self, names: Iterable[str], timeout: float = 15.0) -> dict[str, int]:
        """SIGTERM ``names``, wait for each, SIGKILL stragglers; they stay listed (see
        :meth:`restart`)."""
        chosen = {n: self.running[n] for n in names if n in self.running}
        for svc in chosen.values():
            if svc.process.poll() is None:
                svc.process.send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        for name, svc in chosen.items():
            try:
                codes[name] = svc.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                svc.process.kill()
                codes[name] = svc.process.wait()
        return codes
