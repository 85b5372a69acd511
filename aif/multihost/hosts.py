"""What makes a namespace a host: its Unix user, its private folder, and how a process
is started there.

Each host runs as its own system user ``aif-<name>`` (made here, removed at the end) and
keeps its state in ``<root>/hosts/<name>/``, mode 0700 and owned by that user, so no
other host can read it: a service that opens another's path gets EACCES.

:meth:`Machine.command` starts a process the way a container runtime would: in the
host's network namespace (``ip netns exec``, which also gives it the host's /etc/hosts)
and in new mount, UTS and IPC namespaces where, still as root, it gets the host's own
hostname, an empty private ``/tmp`` and ``/dev/shm``, and, where the interpreter lives
under a folder others cannot enter (``/root`` here), a view in which that folder holds the
interpreter and nothing else. Service hosts also see the repository's ``build/`` and
``deploy/usecases/`` empty (state and use cases reach them only through their settings
and the registry's catalogue); the app host sees ``build/`` empty. Then it drops to the host's user (setpriv:
no supplementary groups, no new privileges, umask 077) and runs the command with only
the environment it was given.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aif.multihost.topology import Host, pids
from libs.sandbox.child import blocked_ancestor

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.prefix) / "bin"
PYTHON = str(VENV_BIN / "python")
# The GECOS field of every user made here: only such users are ever removed.
MARK = "aif-multihost"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Repository folders a host sees empty (read-only): state and use cases reach a service only
# through its settings and the registry's catalogue; infra hosts need build/infra's tools,
# the app host reads the specs it applies.
HIDDEN = {"service": ("build", "deploy/usecases"), "client": ("build",), "infra": ()}


# What the hosts' users run and read from the checkout (and the virtualenv, all of it).
CODE = ("aif", "libs", "services", "proto", "deploy/kafka", "deploy/triton", "deploy/usecases")


def _grant(path: Path, changed: list[str]) -> None:
    """o+rx on a folder, o+r on a file (o+x too when its owner may execute it)."""
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return
    want = 0o005 if stat.S_ISDIR(mode) else 0o004 | (0o001 if mode & 0o100 else 0)
    if mode & want != want:
        os.chmod(path, mode | want)
        changed.append(f"chmod o+{'r' if want & 0o004 else ''}{'x' if want & 0o001 else ''} {path}")


def check_readable() -> list[str]:
    """Grants read (and execute, where the owner has it) to others on what the hosts' users
    need and lack: the folders above the checkout and the virtualenv, the code and
    configuration they run, the virtualenv; returns what it changed (nothing else is
    touched: the interpreter's own prefix, under /root here, is reached through a mount)."""
    changed: list[str] = []
    venv = Path(sys.prefix)
    for top in (REPO, venv):
        for folder in [*reversed(top.parents), top]:
            _grant(folder, changed)
    for tree in [*(REPO / rel for rel in CODE), venv]:
        for parent, dirs, files in os.walk(tree):
            for name in dirs + files:
                _grant(Path(parent) / name, changed)
    return changed


@dataclass(frozen=True)
class Machine:
    """A host made real: its user and private folder under ``root``."""

    host: Host
    root: Path  # the layout's state root: <root>/hosts/<name> is this host's folder

    @property
    def home(self) -> Path:
        return self.root / "hosts" / self.host.name

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.host.user).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.host.user).pw_gid

    def create(self) -> None:
        """The user (a system account, no login shell) and its 0700 folder."""
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                str(self.home),
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                MARK,
                self.host.user,
            ],
            check=True,
            capture_output=True,
        )
        self.home.mkdir(parents=True, exist_ok=False)
        os.chown(self.home, self.uid, self.gid)
        os.chmod(self.home, 0o700)

    def mkdir(self, relative: str) -> Path:
        """A folder in this host's folder, owned by its user, 0700 (as a pod's mounted volume)."""
        path = self.home / relative
        for folder in [*reversed(path.parents), path]:
            if folder.is_relative_to(self.home) and folder != self.home and not folder.exists():
                folder.mkdir(mode=0o700)
                os.chown(folder, self.uid, self.gid)
        return path

    def put(self, relative: str, data: bytes, mode: int = 0o600) -> Path:
        """Writes a file into this host's folder, owned by its user (what a Secret or a
        ConfigMap mounted into the pod would hold)."""
        path = self.home / relative
        self.mkdir(str(Path(relative).parent))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)
        return path

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": f"{VENV_BIN}:{SYSTEM_PATH}",
            "HOME": str(self.home),
            "USER": self.host.user,
            "LOGNAME": self.host.user,
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            # The repository is read-only for this user: no __pycache__ writes to try.
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def _prelude(self) -> str:
        """Shell run as root inside the host's fresh namespaces before dropping privileges."""
        q = shlex.quote
        steps = ["set -e", f"hostname {q(self.host.name)}"]
        # The code this host runs may itself live under /tmp (a CI clone): it is kept
        # through the fresh /tmp by a bind mount staged outside it.
        kept = self._kept_under_tmp()
        for i, path in enumerate(kept):
            steps.append(f"mount --bind {q(str(path))} {q(str(self._stage(i)))}")
        steps += [
            "mount -t tmpfs -o mode=1777,size=1g,nosuid,nodev tmpfs /tmp",
            "mount -t tmpfs -o mode=1777,size=1g,nosuid,nodev tmpfs /dev/shm",
        ]
        for i, path in enumerate(kept):
            steps += [
                f"mkdir -p {q(str(path))}",
                f"mount --bind {q(str(self._stage(i)))} {q(str(path))}",
                f"umount {q(str(self._stage(i)))}",
            ]
        prefix = Path(sys.base_prefix).resolve()
        blocked = blocked_ancestor(prefix)
        if blocked is not None:
            stage = self.root / "mnt" / self.host.name
            steps += [
                f"mount --bind {q(str(prefix))} {q(str(stage))}",
                f"mount -t tmpfs -o mode=755,size=1m tmpfs {q(str(blocked))}",
                f"mkdir -p {q(str(prefix))}",
                f"mount --bind {q(str(stage))} {q(str(prefix))}",
                f"mount -o remount,bind,ro {q(str(prefix))}",
                f"umount {q(str(stage))}",
            ]
        for rel in HIDDEN[self.host.kind]:
            steps.append(f"mount -t tmpfs -o ro,mode=755,size=64k tmpfs {shlex.quote(str(REPO / rel))}")
        steps.append("umask 077")
        return "\n".join(steps)

    def _kept_under_tmp(self) -> list[Path]:
        """The repository, the venv and the interpreter, where they lie under /tmp or
        /dev/shm (which each host gets empty), outermost only."""
        volatile = (Path("/tmp"), Path("/dev/shm"))
        paths = sorted(
            {
                p
                for p in (REPO, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve())
                if any(p.is_relative_to(v) and p != v for v in volatile)
            }
        )
        return [p for p in paths if not any(p != o and p.is_relative_to(o) for o in paths)]

    def _stage(self, i: int) -> Path:
        return self.root / "mnt" / f"{self.host.name}-keep{i}"

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run on this host (see the module docstring)."""
        (self.root / "mnt" / self.host.name).mkdir(parents=True, exist_ok=True)
        for i in range(len(self._kept_under_tmp())):
            self._stage(i).mkdir(parents=True, exist_ok=True)
        drop = [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
        ]
        script = f'{self._prelude()}\nexec {shlex.join(drop)} "$@"'
        return [
            "ip",
            "netns",
            "exec",
            self.host.netns,
            "unshare",
            "--uts",
            "--ipc",
            "--",
            "/bin/sh",
            "-c",
            script,
            self.host.name,
            *argv,
        ]

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], log: Path, *, pipe: bool = False
    ) -> subprocess.Popen[bytes]:
        """Starts ``argv`` on this host with exactly ``env`` (on top of :meth:`base_env`);
        output to ``log`` (or a pipe, for the caller to tee)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**self.base_env(), **env}
        out = subprocess.PIPE if pipe else log.open("ab")
        try:
            return subprocess.Popen(
                self.command(argv),
                env=full_env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if not pipe:
                out.close()  # type: ignore[union-attr]

    def run(
        self, argv: Sequence[str], env: Mapping[str, str], log: Path, timeout: float
    ) -> subprocess.CompletedProcess[bytes]:
        """Runs ``argv`` to its end; its output is appended to ``log`` and returned."""
        log.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            self.command(argv),
            env={**self.base_env(), **env},
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        with log.open("ab") as fh:
            shown = shlex.join(argv)
            shown = shown if len(shown) < 160 else shown[:157] + "..."
            fh.write(f"\n=== {time.strftime('%F %T')} {shown} (exit {done.returncode})\n".encode())
            fh.write(done.stdout + done.stderr)
        return done

    def stop(self, timeout: float = 15.0) -> None:
        """Stops every process in this host's namespace: SIGTERM, then SIGKILL."""
        stop_pids(pids(self.host.netns), timeout)


def stop_pids(targets: Iterable[int], timeout: float = 15.0) -> None:
    """SIGTERM each pid, wait up to ``timeout``, then SIGKILL the ones still there."""
    left = set(targets)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        left = {p for p in left if _running(p)}
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def our_users() -> list[pwd.struct_passwd]:
    """The users made by this module (this run or a killed one): GECOS is MARK."""
    return [p for p in pwd.getpwall() if p.pw_gecos == MARK and p.pw_name.startswith("aif-")]


def pids_of(uids: Iterable[int]) -> list[int]:
    """Processes whose real uid is one of ``uids``."""
    wanted = set(uids)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                if int(line.split()[1]) in wanted:
                    found.append(int(entry.name))
                break
    return found


def remove_users() -> list[str]:
    """Stops every process of our users, then removes the users; returns their names."""
    users = our_users()
    stop_pids(pids_of(p.pw_uid for p in users), timeout=10)
    removed = []
    for p in users:
        subprocess.run(["userdel", p.pw_name], capture_output=True, check=False)
        # --user-group made a group of the same name; userdel removes it when it is empty.
        removed.append(p.pw_name)
    return removed
