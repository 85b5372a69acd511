"""Triton Inference Server: the ``tritonserver`` binary from the nvidia-pytriton wheel.

Runs on our own model repository in explicit model-control mode (models are loaded
and unloaded through the repository API), with only the python backend.

Model control is restricted (Triton's ``--grpc-restricted-protocol`` and
``--http-restricted-api``): loading a model runs its code, so the repository, config,
statistics, shared-memory, trace and logging endpoints answer only a call that carries
the header ``triton-grpc-protocol-aif-control`` (HTTP: ``aif-control``) with this
install's key, drawn once into ``<infra>/triton/control_key`` (0600). The gateway is
given that key (``AIF_GATEWAY_TRITON_CONTROL_KEY``); nothing else needs it.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ._component import Component, Handle
from ._proc import InfraError, NotReady
from .config import DEPLOY_DIR, InfraConfig

TEST_MODELS = DEPLOY_DIR / "triton" / "models"  # e.g. identity_fp32, to prove Triton works
CONTROL_KEY_FILE = "control_key"
# The header name (as services.gateway.triton.TRITON_CONTROL_HEADER) and what it guards.
CONTROL_HEADER = "aif-control"
RESTRICTED = "model-repository,model-config,statistics,shared-memory,trace,logging"


def control_key(directory: Path) -> str:
    """This Triton's model-control key, drawn on first use (kept across restarts)."""
    path = directory / CONTROL_KEY_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # drawn by a concurrent start
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def restriction_args(key: str) -> list[str]:
    """tritonserver's options that put model control behind ``key``."""
    return [
        f"--grpc-restricted-protocol={RESTRICTED}:{CONTROL_HEADER}={key}",
        f"--http-restricted-api={RESTRICTED}:{CONTROL_HEADER}={key}",
    ]


def _pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise InfraError("triton", "nvidia-pytriton is not installed (pip install -r requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


def server_binary() -> Path:
    return _pytriton_dir() / "tritonserver" / "bin" / "tritonserver"


def backends_dir(config: InfraConfig) -> Path:
    return config.tools("triton") / "backends"


def install(config: InfraConfig) -> bool:
    """Assembles backends/python/ from the wheel; True when it copied anything."""
    src = _pytriton_dir() / "tritonserver"
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    files = [
        src / "backends" / "python" / "libtriton_python.so",
        src / "backends" / "python" / "triton_python_backend_utils.py",
        # The stub runs model.py in this interpreter's version (3.8-3.13 ship).
        src / "python_backend_stubs" / pyver / "triton_python_backend_stub",
    ]
    dest = backends_dir(config) / "python"
    dest.mkdir(parents=True, exist_ok=True)
    copied = False
    for f in files:
        if not f.exists():
            raise InfraError("triton", f"{f} missing from the nvidia-pytriton wheel")
        target = dest / f.name
        if not target.exists() or target.stat().st_size != f.stat().st_size:
            shutil.copy2(f, target)
            copied = True
    return copied


def server_env() -> dict[str, str]:
    """Environment the server and its python stubs need outside PyTriton."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    # The wheel's bundled libs for tritonserver; LIBDIR so the stub binds this
    # interpreter's libpython, not a system one.
    libs = [str(Path(_pytriton_dir()).parent / "nvidia_pytriton.libs"), libdir]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in [*libs, env.get("LD_LIBRARY_PATH", "")] if p)
    # The stub ignores PYTHONPATH and finds packages via the `python3` on PATH.
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}:{env.get('PATH', '')}"
    # The python backend's stub would write __pycache__ into a version's directory; Triton
    # then sees the model's files changed and reloads the version on the next load request.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Triton(Component):
    name = "triton"
    default_timeout = 60.0

    @property
    def port(self) -> int:
        return self.config.triton_grpc_port

    @property
    def other_ports(self) -> list[int]:
        return [self.config.triton_http_port, self.config.triton_metrics_port]

    @property
    def model_repository(self) -> Path:
        return self.config.model_repository

    def spawn(self) -> int:
        cfg = self.config
        backends = backends_dir(cfg)
        if not (backends / "python" / "libtriton_python.so").exists():
            raise InfraError(self.name, f"no python backend in {backends}: run `python -m aif.infra install`")
        self.model_repository.mkdir(parents=True, exist_ok=True)
        argv = [
            str(server_binary()),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            # Ready even while some model failed to load: models are managed one by one.
            "--strict-readiness=false",
            f"--http-address={cfg.host}",
            f"--http-port={cfg.triton_http_port}",
            f"--grpc-address={cfg.host}",
            f"--grpc-port={cfg.triton_grpc_port}",
            f"--metrics-address={cfg.host}",
            f"--metrics-port={cfg.triton_metrics_port}",
            # In-flight requests get 5 s on SIGTERM (default 30) so stop/restart is quick.
            "--exit-timeout-secs=5",
            "--log-verbose=0",
            *(restriction_args(control_key(self.dir)) if cfg.triton_restricted else []),
        ]
        return self.daemon.spawn(argv, env=server_env(), cwd=self.dir)

    def probe(self) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.endpoint())
        try:
            if not (client.is_server_live(client_timeout=2) and client.is_server_ready(client_timeout=2)):
                raise NotReady("server not live/ready yet")
        except InferenceServerException as exc:
            raise NotReady(str(exc)) from exc
        finally:
            client.close()


@dataclass(kw_only=True)
class TritonHandle(Handle):
    """A reachable Triton. ``grpc_url``/``http_url`` are ``host:port`` (tritonclient style).

    For outage tests: ``stop_server()`` then ``start_server()`` (aif.infra-managed only).
    """

    grpc_url: str
    http_url: str
    metrics_url: str
    model_repository: Path
    control_key: str = ""

    @property
    def control_headers(self) -> dict[str, str]:
        """tritonclient ``headers=`` for a model-control call (load, unload, index)."""
        return {f"triton-grpc-protocol-{CONTROL_HEADER}": self.control_key} if self.control_key else {}

    def load_model(self, name: str, source: Path | None = None) -> None:
        """Loads a model folder (default: deploy/triton/models/<name>) through Triton's API:
        its config.pbtxt as the config, its version folders' files as ``file:`` overrides.
        The repository folder stays Triton's alone: nothing is copied into it."""
        import json

        import tritonclient.grpc as grpcclient
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2

        src = source or TEST_MODELS / name
        config = text_format.Parse((src / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        files = {
            f"file:{path.relative_to(src).as_posix()}": path.read_bytes()
            for path in sorted(src.glob("[0-9]*/**/*"))
            if path.is_file()
        }
        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            client.load_model(
                name,
                config=json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)),
                files=files,
                headers=self.control_headers,
            )
        finally:
            client.close()


def ensure_triton(config: InfraConfig | None = None, timeout: float | None = None) -> TritonHandle:
    """Reuses the server on the Triton gRPC port or starts one on the model repository."""
    comp = Triton(config or InfraConfig.from_env())
    started = comp.ensure(timeout)
    cfg = comp.config
    return TritonHandle(
        started=started,
        log_file=comp.daemon.log_file,
        component=comp,
        grpc_url=f"{cfg.host}:{cfg.triton_grpc_port}",
        http_url=f"{cfg.host}:{cfg.triton_http_port}",
        metrics_url=f"http://{cfg.host}:{cfg.triton_metrics_port}/metrics",
        model_repository=comp.model_repository,
        control_key=control_key(comp.dir),
    )
