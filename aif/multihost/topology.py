"""The hosts of the multi-host layout and the network that joins them.

Each host is a Linux network namespace (``aifmh-<name>``) with one veth pair into one
bridge (``aifmh0``), one address on a private /24 and an ``/etc/netns/<ns>/hosts`` that
names every host, so ``ip netns exec`` gives each its own ``/etc/hosts`` and a process
finds ``kafka``, ``registry``... by name, as in a Kubernetes cluster. The bridge has no
address in the root namespace and no host has a default route: traffic can go only
between the namespaces made here, never to the machine's own services or beyond.

Everything is named with the ``aifmh`` prefix so :func:`remove_leftovers` can find and
remove what a killed earlier run left behind, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PREFIX = "aifmh"
BRIDGE = f"{PREFIX}0"
SUBNET = "10.231.41"  # /24: private, unlikely to clash with a lab or cloud network
NETNS_ETC = Path("/etc/netns")


@dataclass(frozen=True)
class Host:
    """One host: its name (what the others call it), its kind and what runs there."""

    name: str
    index: int  # address .(10 + index), veth aifmhv<index>
    kind: str  # "infra", "service" or "client"
    runs: str

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{10 + self.index}"

    @property
    def user(self) -> str:
        return f"aif-{self.name}"

    @property
    def veth(self) -> str:
        return f"{PREFIX}v{self.index}"  # interface names stop at 15 characters


def _hosts() -> tuple[Host, ...]:
    infra = [
        ("kafka", "Kafka 3.9.1 broker + KRaft controller (kafka:9092)"),
        ("postgres", "PostgreSQL, SCRAM logins, a database and role per service (postgres:5432)"),
        ("redis", "Redis, the feature store's online store (redis:6379)"),
        ("triton", "Triton, explicit model control, its own model repository (triton:8001)"),
    ]
    services = [
        ("ingestion", "ingestion service (ingestion:50051)"),
        ("featurestore", "feature store service, Feast on Redis (featurestore:50052)"),
        ("trainer", "trainer service, jobs in PostgreSQL (trainer:50053)"),
        ("evaluator", "evaluator service, reports in PostgreSQL (evaluator:50054)"),
        ("registry", "registry service, PostgreSQL + its artifact files (registry:50055)"),
        ("gateway", "gateway service, loads models into triton over its API (gateway:50056)"),
        ("monitor", "monitor service, state in PostgreSQL (monitor:50057)"),
    ]
    client = [("client", "the app: aif usecase apply, producer, loop driver, feedback")]
    rows = [(n, "infra", r) for n, r in infra] + [(n, "service", r) for n, r in services]
    rows += [(n, "client", r) for n, r in client]
    return tuple(Host(name, i + 1, kind, runs) for i, (name, kind, runs) in enumerate(rows))


HOSTS: tuple[Host, ...] = _hosts()
BY_NAME = {h.name: h for h in HOSTS}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One ``ip`` command; a failure raises with its stderr."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def hosts_file(hosts: Iterable[Host], own: Host) -> str:
    lines = [
        f"# {own.netns}: written by aif.multihost, bind-mounted over /etc/hosts by `ip netns exec`",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    lines += [f"{h.address}\t{h.name} {h.name}.{PREFIX}.internal" for h in hosts]
    return "\n".join(lines) + "\n"


def create(hosts: Sequence[Host] = HOSTS) -> None:
    """The bridge, then per host: its namespace, veth pair, address and /etc/netns files."""
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("link", "set", BRIDGE, "up")
    for host in hosts:
        ns = host.netns
        ip("netns", "add", ns)
        peer = f"{PREFIX}p{host.index}"
        ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
        ip("link", "set", host.veth, "master", BRIDGE, "up")
        ip("link", "set", peer, "netns", ns)
        ip("-n", ns, "link", "set", peer, "name", "eth0")
        ip("-n", ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        etc = NETNS_ETC / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts_file(hosts, host))
        (etc / "hostname").write_text(host.name + "\n")
        # No DNS server can be reached from here: every name is in the hosts file.
        (etc / "resolv.conf").write_text("# aif.multihost: names come from /etc/hosts only\n")
        for f in etc.iterdir():
            f.chmod(0o644)


def pids(netns: str) -> list[int]:
    """Processes running in a namespace (``ip netns pids``)."""
    out = ip("netns", "pids", netns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]


def ours() -> list[str]:
    """Namespaces with our prefix, whoever made them (this run or a killed one)."""
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{PREFIX}-")]


def remove_leftovers() -> list[str]:
    """Deletes every namespace, veth, bridge and /etc/netns folder with our prefix; returns
    what it removed. Processes must have been stopped first (see aif.multihost.hosts)."""
    removed = []
    for ns in ours():
        ip("netns", "del", ns, check=False)
        removed.append(f"netns {ns}")
    links = ip("-o", "link", "show", check=False).stdout
    for name in re.findall(rf"^\d+: ({PREFIX}[a-z]*\d+)[@:]", links, flags=re.M):
        if ip("link", "del", name, check=False).returncode == 0:
            removed.append(f"link {name}")
    if NETNS_ETC.is_dir():
        for etc in NETNS_ETC.glob(f"{PREFIX}-*"):
            shutil.rmtree(etc, ignore_errors=True)
            removed.append(f"{etc}")
        with contextlib.suppress(OSError):
            NETNS_ETC.rmdir()  # only when empty: other tools may keep theirs here
    return removed
