"""Model versions for the gateway's tests and bench, and a Triton of their own.

The TorchScript artifact is a tiny MLP that follows the model I/O contract (float32
``[batch, len(uc.model_inputs())]`` in, NaN for missing; class probabilities or
``[batch, 1]`` out). In the factory the gateway loads versions into Triton through its API
with the registry's serving bundles (tests/integration/test_gateway_bundles.py); the
tests without a registry (static aliases) play the operator of a Triton whose own
repository holds the versions: :func:`export_version` writes an entry there with the
registry's exporter (``services/registry/export.py``), the one way the gateway's
``TritonRepository`` source is fed.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from libs.usecase import UseCase


def output_names(uc: UseCase) -> list[str]:
    return ["value"] if uc.task == "regression" else [f"p_{c}" for c in uc.label.classes or ()]


def torchscript(uc: UseCase, *, seed: int = 1, bias: float = 0.0) -> bytes:
    """A scripted MLP for ``uc``; ``bias`` shifts the last layer so versions answer differently."""
    import torch

    n_in, n_out = len(uc.model_inputs()), len(output_names(uc))
    regression = uc.task == "regression"

    class Mlp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.regression = regression
            self.hidden = torch.nn.Linear(n_in, 16)
            self.out = torch.nn.Linear(16, n_out)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Embedded preprocessing: a missing value (NaN) becomes 0, magnitudes squashed.
            x = torch.nan_to_num(x, nan=0.0)
            x = torch.sign(x) * torch.log1p(torch.abs(x))
            y = self.out(torch.relu(self.hidden(x)))
            if self.regression:
                return y
            return torch.softmax(y, dim=1)

    torch.manual_seed(seed)
    model = Mlp()
    with torch.no_grad():
        model.out.bias[-1] += bias
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model.eval()), buffer)
    return buffer.getvalue()


def export_version(
    repo: Path,
    uc: UseCase,
    version: int,
    *,
    bias: float = 0.0,
    model_name: str | None = None,
    artifacts: Path | None = None,
) -> Path:
    """Writes version ``version`` of ``uc``'s model into the folder ``repo`` (a test
    Triton's own repository) with the registry's exporter; returns the version folder."""
    from services.registry.artifacts import FileArtifactStore
    from services.registry.domain import SYSTEM, ModelVersion, Signature, VersionStatus
    from services.registry.export import TritonExporter

    store = FileArtifactStore(artifacts or repo.parent / "gateway-test-artifacts")
    stored = store.put(torchscript(uc, seed=version, bias=bias))
    mv = ModelVersion(
        use_case=uc.name,
        name=model_name or uc.name,
        version=version,
        status=VersionStatus.APPROVED,
        artifact_sha256=stored.sha256,
        signature=Signature(tuple(uc.model_inputs()), tuple(output_names(uc)), uc.task),
        created_at=datetime.now(UTC),
        created_by=SYSTEM,
    )
    return TritonExporter(repo, store).export(mv).version_dir


# -- a Triton of the gateway tests' own, and an in-process gateway ----------------------

GATEWAY_BUILD = Path(__file__).resolve().parents[1] / "build" / "gateway-tests"


def own_triton(name: str, base_port: int, *, restricted: bool = True):  # type: ignore[no-untyped-def]
    """A Triton on ``base_port``..+2 with its own infra dir and model repository (reused
    when already running), so tests never touch the shared one on 8001. ``restricted``:
    model control behind its key (as every deployment); off only for perf_analyzer."""
    import dataclasses

    from aif.infra import InfraConfig, ensure_triton
    from aif.infra.triton import install

    cfg = dataclasses.replace(
        InfraConfig.from_env(),
        infra_dir=GATEWAY_BUILD / name,
        triton_http_port=base_port,
        triton_grpc_port=base_port + 1,
        triton_metrics_port=base_port + 2,
        triton_model_repo=None,
        triton_restricted=restricted,
    )
    install(cfg)
    cfg.model_repository.mkdir(parents=True, exist_ok=True)
    handle = ensure_triton(cfg)
    CONTROL_KEYS[handle.grpc_url] = handle.control_key
    return handle


# Model-control keys of the Tritons started here, by gRPC address: gateway_settings gives
# the gateway the key of the Triton it is pointed at, as a deployment does.
CONTROL_KEYS: dict[str, str] = {}


def control_key(triton_url: str) -> str:
    """The model-control key of the Triton at ``triton_url`` (a test's own, or the shared one)."""
    if triton_url not in CONTROL_KEYS:
        from aif.infra import InfraConfig
        from aif.infra.triton import control_key as read_key

        cfg = InfraConfig.from_env()
        if triton_url == f"{cfg.host}:{cfg.triton_grpc_port}":
            CONTROL_KEYS[triton_url] = read_key(cfg.dir("triton"))
    return CONTROL_KEYS.get(triton_url, "")


_shared: dict[str, object] = {}


def shared_triton():  # type: ignore[no-untyped-def]
    """One gateway-test Triton per test process (stopped at exit), with loan_approval
    versions 1 and 2 exported (2 leans further to class 1)."""
    handle = _shared.get("triton")
    if handle is None:
        import atexit

        from libs.usecase import load_default

        handle = _shared["triton"] = own_triton("triton-main", 28471)
        uc = load_default()["loan_approval"]
        export_version(handle.model_repository, uc, 1)
        export_version(handle.model_repository, uc, 2, bias=2.0)
        atexit.register(handle.stop)
    return handle


def usecases_dir(tmp: Path, strategy: str, share: float = 0.2) -> Path:
    """A copy of the shipped specs with loan_approval's deployment strategy changed."""
    from libs.usecase import DEFAULT_DIR

    tmp.mkdir(parents=True, exist_ok=True)
    for spec in DEFAULT_DIR.glob("*.yaml"):
        text = spec.read_text()
        if spec.stem == "loan_approval":
            lines = [
                f"deployment: {{promotion: auto, strategy: {strategy}, canary_share: {share}, "
                "rollback_margin: 0.05}"
                if line.startswith("deployment:")
                else line
                for line in text.splitlines()
            ]
            text = "\n".join(lines) + "\n"
        (tmp / spec.name).write_text(text)
    return tmp


def gateway_settings(triton_url: str, bootstrap: str, **overrides: object):  # type: ignore[no-untyped-def]
    from services.gateway.settings import GatewaySettings

    values: dict[str, object] = dict(
        grpc_port=0,
        oip_port=0,
        metrics_port=0,
        auth_mode="off",
        triton_url=triton_url,
        triton_control_key=control_key(triton_url),
        kafka_bootstrap=bootstrap,
        registry_target="",
        featurestore_target="127.0.0.1:1",
        predlog_flush_ms=20,
        warmup_requests=2,
        retire_grace_s=1.0,
        use_cases="loan_approval",
    )
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


class RunningGateway:
    """A gateway built and started in this event loop; ``stop()`` drains and closes it."""

    def __init__(self, service, telemetry) -> None:  # type: ignore[no-untyped-def]
        self.service = service
        self.telemetry = telemetry

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.service.server.port}"

    @property
    def oip_url(self) -> str:
        return f"127.0.0.1:{self.service.oip_port}"

    async def stop(self) -> None:
        await self.service.server.stop()
        await self.service.close()


async def start_gateway(settings, usecases: Path | None = None) -> RunningGateway:  # type: ignore[no-untyped-def]
    """The gateway in this process, built with the specs of ``usecases`` (a folder; default:
    the shipped ones) instead of following the catalogue."""
    import functools

    from libs.runtime import start_service
    from libs.usecase import load_default
    from services.gateway.app import build

    service, telemetry = await start_service(
        settings, functools.partial(build, usecases=load_default(usecases))
    )
    await service.server.start()
    return RunningGateway(service, telemetry)
