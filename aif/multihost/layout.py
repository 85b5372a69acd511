"""The factory across hosts: builds the layout, starts every part on its host, runs the
app host's checks and loop, and removes everything it made, whatever happened.

Order: a lock (one layout per machine at a time), removal of what a killed earlier run
left, the network (:mod:`aif.multihost.topology`), a user and a private folder per host
(:mod:`aif.multihost.hosts`), credentials (each host its own token file and the public
key, nothing else), Kafka, PostgreSQL, Redis and Triton on their hosts (aif.infra's own
components, :mod:`aif.multihost.infrahost`), smoke checks from the app host, the seven
services on theirs, then the app host's run (:mod:`aif.multihost.client`). Output of
every process goes to ``build/multihost/logs/<host>.log`` (kept after the run); the state
root (``/var/lib/aif-multihost`` or ``AIF_MULTIHOST_ROOT``) is removed.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from aif import infra
from aif.loop import LoopConfig
from aif.multihost import topology
from aif.multihost.hosts import PYTHON, REPO, Machine, check_readable, remove_users
from aif.multihost.topology import HOSTS, SUBNET
from aif.stack import CALLERS, SERVICE_ROLES, SERVICES, Stack
from libs.auth import DevAuth
from libs.auth.dev import TOKEN_FILE
from libs.auth.tokens import PUBLIC_KEY_FILE, REVOKED_FILE

STATE_ROOT = Path(os.environ.get("AIF_MULTIHOST_ROOT") or "/var/lib/aif-multihost")
OUT_DIR = REPO / "build" / "multihost"
LOCK_FILE = Path("/run/lock/aif-multihost.lock")
ON_POSTGRES = ("registry", "trainer", "evaluator", "monitor")
INFRA = ("kafka", "postgres", "redis", "triton")
# Settings that name a service's folders: each is made before the service starts.
VOLUME_SETTINGS = ("_DATA_DIR", "_FEAST_REPO", "_ARTIFACT_ROOT", "_EXPORT_ROOT", "_PREDLOG_WAL_DIR")
# Small sizes, as the e2e and bench loops: the layout, not the model, is under test.
LOOP = LoopConfig(bootstrap=2_000, stationary=800, recovery=600, max_after_onset=20_000, timeout_s=300)


@dataclass
class Outcome:
    """What a run measured; ``ok`` when every step passed and the loop closed."""

    ok: bool = False
    failure: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    loop: dict[str, Any] = field(default_factory=dict)
    hosts: list[dict[str, str]] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)
    permissions_changed: list[str] = field(default_factory=list)


class StepFailed(RuntimeError):
    pass


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One layout per machine: another run (another engineer's `make test`) waits."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _Names(Stack):
    """aif.stack's wiring, with targets by host name (``registry:50055``)."""

    def target(self, name: str) -> str:
        return f"{name}:{SERVICES[name][0]}"


class Layout:
    def __init__(
        self, root: Path = STATE_ROOT, out: Path = OUT_DIR, say: Callable[[str], None] = print
    ) -> None:
        self.root = root
        self.out = out
        self.logs = out / "logs"
        self.say = say
        self.machines = {h.name: Machine(h, root) for h in HOSTS}
        self.outcome = Outcome()
        self.services: dict[str, subprocess.Popen[bytes]] = {}
        self._torn_down = False
        self.pg_passwords = {name: secrets.token_urlsafe(24) for name in ON_POSTGRES}
        self.redis_password = secrets.token_urlsafe(24)
        self.auth = DevAuth(root / "issuer")

    # -- cleanup -------------------------------------------------------------------------

    def teardown(self) -> None:
        """Stops every process, removes namespaces, bridge, veths, /etc/netns entries, users
        and the state root; keeps the logs (daemons' logs copied out first)."""
        if self._torn_down:
            return
        self._torn_down = True
        for proc in self.services.values():
            if proc.poll() is None:
                proc.terminate()
        self._copy_daemon_logs()
        self.outcome.cleanup = cleanup_everything(self.root)

    def _copy_daemon_logs(self) -> None:
        for name in INFRA:
            home = self.machines[name].home
            for log in (home / "infra" / name).glob("*.log") if home.exists() else ():
                with contextlib.suppress(OSError):
                    shutil.copyfile(log, self.logs / f"{name}-{log.name}")

    # -- building ------------------------------------------------------------------------

    def build(self) -> None:
        started = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        if self.logs.exists():
            shutil.rmtree(self.logs)
        self.logs.mkdir(mode=0o700)
        self.root.mkdir(mode=0o711, parents=True)
        (self.root / "hosts").mkdir(mode=0o711)
        self.outcome.permissions_changed = check_readable()
        for change in self.outcome.permissions_changed:
            self.say(f"    permissions: {change}")
        topology.create(HOSTS)
        for machine in self.machines.values():
            machine.create()
        self._credentials()
        self.outcome.seconds["layout"] = time.monotonic() - started
        self.say(
            f"    {len(HOSTS)} hosts (network namespaces on bridge {topology.BRIDGE}, {SUBNET}.0/24), "
            f"a user and a 0700 folder each, in {self.outcome.seconds['layout']:.1f}s"
        )

    def _credentials(self) -> None:
        """Each service host: the public key, the revocation list and (callers) its token; the
        app host: the public key and an operator's token. The issuer's folder (the private
        key) stays in the root namespace, readable by root only."""
        self.auth.ensure()
        os.chmod(self.auth.directory, 0o700)
        for name in SERVICES:
            minted = self.auth.mint_service(name, SERVICE_ROLES[name] if name in CALLERS else None)
            machine = self.machines[name]
            for file, mode in ((PUBLIC_KEY_FILE, 0o644), (REVOKED_FILE, 0o644), (TOKEN_FILE, 0o600)):
                if (minted / file).exists():
                    machine.put(f"credentials/{file}", (minted / file).read_bytes(), mode)
        client = self.machines["client"]
        client.put(f"credentials/{PUBLIC_KEY_FILE}", self.auth.public_key.read_bytes(), 0o644)
        token = self.auth.issue("multihost-operator", {"*": ["admin"]}, ttl_seconds=3600)
        client.put(f"credentials/{TOKEN_FILE}", token.encode(), 0o600)
        pg = self.machines["postgres"]
        pg.put("secrets/superuser", secrets.token_urlsafe(24).encode())
        roles = {f"aif_{name}": pw for name, pw in self.pg_passwords.items()}
        pg.put("secrets/roles.json", json.dumps(roles).encode())
        self.machines["redis"].put("secrets/password", self.redis_password.encode())

    # -- infrastructure ------------------------------------------------------------------

    def start_infra(self) -> None:
        started = time.monotonic()
        tools = infra.InfraConfig.from_env()
        tools_dir = str(tools.tools_dir or tools.infra_dir)

        def one(name: str) -> tuple[str, float]:
            machine = self.machines[name]
            env = {"AIFMH_ADDRESS": machine.host.address, "AIFMH_TOOLS_DIR": tools_dir}
            if name == "postgres":
                env |= {
                    "AIFMH_SUBNET": f"{SUBNET}.0/24",
                    "AIFMH_PG_SUPERUSER_FILE": str(machine.home / "secrets" / "superuser"),
                    "AIFMH_PG_ROLES_FILE": str(machine.home / "secrets" / "roles.json"),
                }
            if name == "redis":
                env["AIFMH_REDIS_PASSWORD_FILE"] = str(machine.home / "secrets" / "password")
            t0 = time.monotonic()
            done = machine.run(
                [PYTHON, "-m", "aif.multihost.infrahost", name], env, self.logs / f"{name}.log", timeout=180
            )
            if done.returncode != 0:
                tail = (done.stdout + done.stderr).decode(errors="replace").strip()[-3000:]
                raise StepFailed(f"{name} did not start on its host (exit {done.returncode}):\n{tail}")
            return done.stdout.decode().strip(), time.monotonic() - t0

        with ThreadPoolExecutor(len(INFRA)) as pool:
            futures = {name: pool.submit(one, name) for name in INFRA}
            for name, fut in futures.items():
                line, took = fut.result()
                self.outcome.seconds[f"infra.{name}"] = took
                self.say(f"    {name:<9} {took:5.1f}s  {line}")
        self.outcome.seconds["infra"] = time.monotonic() - started

    # -- checks --------------------------------------------------------------------------

    def smoke(self) -> None:
        """From the app host: names, reachability, refusals (aif.multihost.client smoke)."""
        done = self.machines["client"].run(
            [PYTHON, "-m", "aif.multihost.client", "smoke"], {}, self.logs / "client.log", timeout=120
        )
        for line in (done.stdout + done.stderr).decode(errors="replace").splitlines():
            if line.startswith("    "):
                self.say(line)
        self.outcome.checks["smoke"] = done.returncode == 0
        if done.returncode != 0:
            raise StepFailed(f"smoke checks failed on the client host (see {self.logs / 'client.log'})")

    def isolation(self) -> None:
        """On every host, as its user: only its own folder can be opened (EACCES elsewhere)."""
        homes = {name: str(m.home) for name, m in self.machines.items()}
        probe = (
            "import json, os, sys\n"
            "out = {}\n"
            "for name, path in json.loads(sys.argv[1]).items():\n"
            "    try:\n"
            "        os.listdir(path); out[name] = 'ok'\n"
            "    except OSError as exc:\n"
            "        out[name] = os.strerror(exc.errno)\n"
            "print(json.dumps(out))\n"
        )
        bad = []

        def one(name: str) -> None:
            done = self.machines[name].run(
                [PYTHON, "-S", "-c", probe, json.dumps(homes)], {}, self.logs / f"{name}.log", timeout=60
            )
            seen = json.loads(done.stdout.decode().strip().splitlines()[-1])
            for other, what in seen.items():
                expected = "ok" if other == name else "Permission denied"
                if what != expected:
                    bad.append(f"{name} opening {other}'s folder: {what} (expected {expected})")

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, self.machines))
        ok = not bad
        self.outcome.checks["isolation"] = ok
        self.say(
            f"    {'ok  ' if ok else 'FAIL'} on each of {len(HOSTS)} hosts, as its user, only its own folder "
            f"opens; the other {len(HOSTS) - 1} answer EACCES (Permission denied)"
        )
        for line in bad:
            self.say(f"         {line}")
        if not ok:
            raise StepFailed("a host could open another host's folder")

    # -- services ------------------------------------------------------------------------

    def service_env(self, name: str) -> dict[str, str]:
        """Settings of one service, environment only: shared ``AIF_*`` and its ``AIF_<NAME>_*``."""
        machine = self.machines[name]
        home = machine.home
        names = _Names(self.logs, auth=self.auth)
        env = {
            **self.auth.env(home / "credentials"),
            **names.wiring(name),
            "AIF_KAFKA_BOOTSTRAP": "kafka:9092",
            # The test hosts' broker is PLAINTEXT: local development, said explicitly.
            "AIF_KAFKA_ALLOW_PLAINTEXT": "1",
            "AIF_GRPC_HOST": "0.0.0.0",  # noqa: S104 - a pod listens on its own address
            "AIF_METRICS_HOST": "0.0.0.0",  # noqa: S104
        }
        prefix = f"AIF_{name.upper()}_"
        if name in CALLERS:
            env[prefix + "SERVICE_TOKEN_FILE"] = str(home / "credentials" / TOKEN_FILE)
        if name in ON_POSTGRES:
            role, password = f"aif_{name}", self.pg_passwords[name]
            env[prefix + "DATABASE_URL"] = f"postgresql+psycopg://{role}:{password}@postgres:5432/{role}"
        env |= {
            "ingestion": {prefix + "DATA_DIR": str(home / "raw")},
            "featurestore": {
                prefix + "FEAST_REPO": str(home / "feast"),
                prefix + "DATA_DIR": str(home / "featurestore"),
                prefix + "ONLINE_STORE": "redis",
                prefix + "REDIS_URL": f"redis://:{self.redis_password}@redis:6379/0",
            },
            "registry": {
                prefix + "ARTIFACT_ROOT": str(home / "artifacts"),
                prefix + "EXPORT_ROOT": str(home / "exports"),
            },
            "gateway": {
                prefix + "TRITON_URL": "triton:8001",
                # Triton's model-control key, drawn by the triton host at its start.
                prefix + "TRITON_CONTROL_KEY": _triton_control_key(self.machines["triton"].home),
                prefix + "PREDLOG_WAL_DIR": str(home / "predlog"),
            },
            # `git describe` of the code version: the checkout belongs to another user.
            "trainer": {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "safe.directory",
                "GIT_CONFIG_VALUE_0": str(REPO),
            },
        }.get(name, {})
        return env

    def start_services(self) -> None:
        for name in SERVICES:
            # The folders its settings name exist, as the volumes mounted into its pod would
            # (the feature store's stream processor does not create its data_dir's parent).
            home = self.machines[name].home
            for key, value in self.service_env(name).items():
                if key.endswith(VOLUME_SETTINGS) and Path(value).is_relative_to(home):
                    self.machines[name].mkdir(str(Path(value).relative_to(home)))
            self.services[name] = self.machines[name].spawn(
                [PYTHON, "-m", f"services.{name}"], self.service_env(name), self.logs / f"{name}.log"
            )
        self.say(f"    7 services launched, each on its host as its user (logs in {self.logs})")

    def _dead_service(self) -> str | None:
        for name, proc in self.services.items():
            if proc.poll() is not None:
                return name
        return None

    # -- the app host ----------------------------------------------------------------------

    def run_client(self, config: LoopConfig = LOOP, service_timeout: float = 180) -> None:
        """The app host's run, its output shown as it comes; fails when a service dies."""
        fields = {k: v for k, v in asdict(config).items() if isinstance(v, int | float | str)}
        client = self.machines["client"]
        started = time.monotonic()
        proc = client.spawn(
            [PYTHON, "-m", "aif.multihost.client", "run", json.dumps(fields), str(service_timeout)],
            {},
            self.logs / "client.log",
            pipe=True,
        )
        assert proc.stdout is not None
        reader = threading.Thread(target=self._tee, args=(proc.stdout, self.logs / "client.log"), daemon=True)
        reader.start()
        dead = None
        while proc.poll() is None:
            dead = self._dead_service()
            if dead is not None:
                proc.terminate()
                break
            time.sleep(0.5)
        code = proc.wait()
        reader.join(5)
        self.outcome.seconds["client"] = time.monotonic() - started
        result_file = client.home / "result.json"
        if result_file.exists():
            self.outcome.loop = json.loads(result_file.read_text())
        if dead is not None:
            tail = _tail(self.logs / f"{dead}.log")
            raise StepFailed(f"service {dead} exited with {self.services[dead].returncode}:\n{tail}")
        if code != 0:
            raise StepFailed(f"the app host's run exited {code} (see {self.logs / 'client.log'})")

    def _tee(self, stream: IO[bytes], log: Path) -> None:
        with log.open("ab") as fh:
            for raw in iter(stream.readline, b""):
                fh.write(raw)
                fh.flush()
                self.say(raw.decode(errors="replace").rstrip("\n"))

    # -- leaks ---------------------------------------------------------------------------

    def secrets_in_logs(self) -> list[str]:
        """Logs that hold a PostgreSQL password, the privacy salt or a token file's token."""
        needles = {f"the {name} database password": pw for name, pw in self.pg_passwords.items()}
        needles["the redis password"] = self.redis_password
        with contextlib.suppress(OSError):
            needles["the privacy salt"] = self.auth.env()["AIF_PRIVACY_SALT"]
        hits = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace")
            hits += [f"{log.name} holds {what}" for what, value in needles.items() if value and value in text]
        return hits

    # -- the table -------------------------------------------------------------------------

    def host_rows(self) -> list[dict[str, str]]:
        rows = []
        for name, machine in self.machines.items():
            rows.append(
                {
                    "host": name,
                    "netns": machine.host.netns,
                    "address": machine.host.address,
                    "user": f"{machine.host.user} ({machine.uid})",
                    "runs": machine.host.runs,
                }
            )
        return rows


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cleanup_everything(root: Path = STATE_ROOT) -> list[str]:
    """Removes whatever this module (this run or a killed one) left: processes in our
    namespaces and of our users, namespaces, veths, bridge, /etc/netns entries, users,
    the state root. Returns what it removed."""
    from aif.multihost.hosts import stop_pids

    removed = []
    for ns in topology.ours():
        stop_pids(topology.pids(ns), timeout=10)
    users = remove_users()
    removed += [f"user {u}" for u in users]
    removed += topology.remove_leftovers()
    if root.exists():
        # The hosts' mounts live in their own mount namespaces, gone with their processes.
        shutil.rmtree(root, ignore_errors=True)
        removed.append(str(root))
    return removed


def render_hosts(rows: list[dict[str, str]]) -> str:
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in ("host", "address", "user", "runs")}
    head = "  ".join(k.ljust(widths[k]) for k in widths)
    lines = [head, "  ".join("-" * widths[k] for k in widths)]
    lines += ["  ".join(r[k].ljust(widths[k]) for k in widths) for r in rows]
    return "\n".join("  " + line for line in lines)


def run(say: Callable[[str], None] = print, config: LoopConfig = LOOP) -> Outcome:
    """The whole proof; never leaves anything behind (try/finally, atexit, SIGTERM)."""
    if os.geteuid() != 0:
        raise PermissionError("aif.multihost needs root: network namespaces, users, mounts")
    started = time.monotonic()
    with _lock():
        leftovers = cleanup_everything()
        if leftovers:
            say(f"==> removed what an earlier run left: {', '.join(leftovers)}")
        layout = Layout(say=say)
        atexit.register(layout.teardown)
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            say("==> hosts: a network namespace, a Unix user and a private folder each")
            layout.build()
            layout.outcome.hosts = layout.host_rows()
            say("==> infrastructure, each part on its host as its user (aif.infra's components)")
            layout.start_infra()
            say("==> checks from the app host and from every host")
            layout.smoke()
            layout.isolation()
            say("==> the seven services, each on its host (settings from the environment only)")
            layout.start_services()
            say("==> the app host: use cases onboarded while the factory runs, then the closed loop")
            layout.run_client(config)
            leaks = layout.secrets_in_logs()
            layout.outcome.checks["no_secrets_in_logs"] = not leaks
            if leaks:
                raise StepFailed("secrets in logs: " + "; ".join(leaks))
            layout.outcome.ok = bool(layout.outcome.loop.get("closed"))
            if not layout.outcome.ok:
                layout.outcome.failure = "the loop did not close"
        except StepFailed as exc:
            layout.outcome.failure = str(exc)
        finally:
            layout.teardown()
            atexit.unregister(layout.teardown)
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
        layout.outcome.seconds["total"] = time.monotonic() - started
        return layout.outcome


def _triton_control_key(home: Path) -> str:
    """The key the triton host's Triton was started with (aif.infra.triton), "" before it."""
    from aif.infra.triton import CONTROL_KEY_FILE

    path = home / "infra" / "triton" / CONTROL_KEY_FILE
    return path.read_text().strip() if path.exists() else ""
