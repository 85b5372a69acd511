"""A model version as Triton serves it: the serving bundle, the folder export, the I/O contract.

The registry never writes Triton's model repository (it belongs to Triton alone). The
gateway, Triton's one client, asks the registry for a version's **serving bundle**
(``GetServingBundle``: the Triton config as JSON and the version folder's files, each a
content-addressed blob it downloads and verifies) and hands them to Triton's load call
(``load_model(name, config=..., files={"file:<version>/model.py": ..., ...})``).
``ExportModelVersion`` writes the same entry into a folder of the caller's choosing
(the registry's export area): a repository to copy elsewhere, never Triton's own.
Both are given only for a version policy allows to serve (``policy.check_servable``: an
APPROVED one); a failed, pending, rejected or archived version is never made loadable.

Model I/O contract (the trainer produces it, the gateway and the evaluator rely on it)
-------------------------------------------------------------------------------------
- The artifact is a **TorchScript** module (``torch.jit.script``/``trace``, saved with
  ``torch.jit.save``) whose ``forward(x: Tensor) -> Tensor`` takes
  **float32 ``[batch, n_inputs]``** where ``n_inputs = len(uc.model_inputs())`` and the
  columns are the use case's model inputs **in ``uc.model_inputs()`` order**
  (one-hot columns ``<feature>__<category>`` included), as the feature store computes
  them: **raw, not normalised**. The module embeds its own preprocessing
  (standardisation with the training mean/std as buffers) and replaces a missing value,
  sent as NaN, with the training mean.
- It returns **float32 ``[batch, n_outputs]``**: for ``binary`` and ``multiclass``
  tasks the **class probabilities** (softmax embedded; rows sum to 1), one column per
  ``uc.label.classes`` entry in that order (so binary is ``[batch, 2]`` and the
  positive class is column 1); for ``regression`` ``[batch, 1]``, the predicted value
  in label units.
- The version's :class:`~services.registry.domain.Signature` records the input names,
  output names and task; registration checks the artifact against it (loads it and
  runs a batch of zeros) and refuses one that does not follow the contract.

Triton entry (``<model_name>/`` in a bundle or an exported folder)
-----------------------------------------------------------------
- ``<version>/model.pt``: the TorchScript artifact, from the checksum-verified artifact
  store; the Triton version number is the registry version number.
- ``<version>/model.py``: python backend. Loads ``model.pt`` with ``torch.jit.load``,
  concatenates the requests Triton batched into one tensor, runs one forward pass and
  splits the result. Tensors move by DLPack both ways
  (``torch.from_dlpack(pb_utils.get_input_tensor_by_name(req, "INPUT").to_dlpack())``,
  ``pb_utils.Tensor.from_dlpack("OUTPUT", torch.to_dlpack(out))``). Runs on CUDA for a
  GPU instance, or for a CPU instance when parameter ``device`` is ``auto`` (default)
  and CUDA is available; ``device: cpu`` forces the CPU.
- ``<version>/lineage.json`` (folder export only): the version, its run, evaluations and
  audit trail.
- ``config.pbtxt``: backend ``python``, ``max_batch_size``, dynamic batching, input
  ``INPUT`` TYPE_FP32 dims ``[n_inputs]``, output ``OUTPUT`` TYPE_FP32 dims
  ``[n_outputs]``, ``version_policy`` latest 1, and parameters ``use_case``, ``task``,
  ``input_names`` and ``output_names`` (JSON lists) so a client can read the contract
  from Triton's model config. Instance group ``KIND_CPU`` by default
  (setting ``triton_instance_kind=gpu`` makes the GPU one active).
- ``config.cpu.pbtxt`` and ``config.gpu.pbtxt`` (folder export): both variants; a
  bundle carries the variant asked for (the gateway's ``triton_config_variant``, else
  the registry's ``triton_instance_kind``) as JSON, the form Triton's load call takes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from libs.errors import InvalidArgument
from services.registry.artifacts import ArtifactStore
from services.registry.domain import ModelVersion, Signature
from services.registry.policy import check_servable

INPUT = "INPUT"
OUTPUT = "OUTPUT"
InstanceKind = Literal["cpu", "gpu"]
INSTANCE_KINDS: tuple[InstanceKind, ...] = ("cpu", "gpu")

MODEL_PY = '''\
"""Triton python backend of an AI Factory model version (written by the registry's export).

Runs model.pt (TorchScript) on every request Triton batched, in one forward pass.
Tensors move by DLPack in and out. CUDA for a GPU instance, or when the "device"
parameter is "auto" and CUDA is available; "cpu" forces the CPU.
"""
import json
import os

import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        wanted = params.get("device", "auto")
        gpu_instance = args.get("model_instance_kind") == "GPU"
        if wanted != "cpu" and torch.cuda.is_available() and (gpu_instance or wanted in ("auto", "cuda")):
            index = int(args.get("model_instance_device_id") or 0) if gpu_instance else 0
            self.device = torch.device("cuda", index)
        else:
            self.device = torch.device("cpu")
            threads = int(params.get("torch_num_threads") or 0)
            if threads > 0:
                torch.set_num_threads(threads)
        path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(path, map_location=self.device).eval()

    def execute(self, requests):
        try:
            inputs = [torch.from_dlpack(pb_utils.get_input_tensor_by_name(r, "INPUT").to_dlpack())
                      for r in requests]
            sizes = [t.shape[0] for t in inputs]
            with torch.inference_mode():
                batch = inputs[0] if len(inputs) == 1 else torch.cat(inputs)
                out = self.model(batch.to(self.device, dtype=torch.float32, non_blocking=True))
                out = out.to(torch.float32).contiguous()
            parts = torch.split(out, sizes) if len(sizes) > 1 else (out,)
            return [pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor.from_dlpack("OUTPUT", torch.to_dlpack(part.contiguous()))])
                for part in parts]
        except Exception as exc:  # one bad batch must not take the model down
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
'''


def _pbtxt_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _parameters(
    signature: Signature, use_case: str, kind: InstanceKind, cpu_threads: int
) -> tuple[dict[str, str], str]:
    """The config's parameters and its instance group kind."""
    params: dict[str, str] = {
        "use_case": use_case,
        "task": signature.task,
        "input_names": json.dumps(list(signature.input_names), ensure_ascii=False),
        "output_names": json.dumps(list(signature.output_names), ensure_ascii=False),
    }
    if kind == "gpu":
        params["device"] = "cuda"
        # Hand GPU-resident inputs to the model without a copy through host memory.
        params["FORCE_CPU_ONLY_INPUT_TENSORS"] = "no"
        return params, "KIND_GPU"
    params["device"] = "auto"
    params["torch_num_threads"] = str(cpu_threads)
    return params, "KIND_CPU"


def config_json(
    name: str,
    signature: Signature,
    *,
    use_case: str,
    kind: InstanceKind = "cpu",
    max_batch_size: int = 256,
    max_queue_delay_us: int = 0,
    cpu_threads: int = 1,
) -> dict[str, Any]:
    """The same config as :func:`render_config`, as the JSON form of Triton's ModelConfig
    (what its load call takes; a test checks both parse to the same message)."""
    params, instance = _parameters(signature, use_case, kind, cpu_threads)
    return {
        "name": name,
        "backend": "python",
        "max_batch_size": max_batch_size,
        "version_policy": {"latest": {"num_versions": 1}},
        "input": [{"name": INPUT, "data_type": "TYPE_FP32", "dims": [signature.n_inputs]}],
        "output": [{"name": OUTPUT, "data_type": "TYPE_FP32", "dims": [signature.n_outputs]}],
        "dynamic_batching": {"max_queue_delay_microseconds": max_queue_delay_us},
        "instance_group": [{"count": 1, "kind": instance}],
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }


def render_config(
    name: str,
    signature: Signature,
    *,
    use_case: str,
    kind: InstanceKind = "cpu",
    max_batch_size: int = 256,
    max_queue_delay_us: int = 0,
    cpu_threads: int = 1,
) -> str:
    """The model's config.pbtxt for a CPU or a GPU instance group."""
    params, instance = _parameters(signature, use_case, kind, cpu_threads)
    lines = [
        f"# Written by the AI Factory registry ({kind.upper()} instance). Contract: services/registry/export.py",
        f"name: {_pbtxt_str(name)}",
        'backend: "python"',
        f"max_batch_size: {max_batch_size}",
        "version_policy: { latest: { num_versions: 1 } }",
        f'input [ {{ name: "{INPUT}" data_type: TYPE_FP32 dims: [ {signature.n_inputs} ] }} ]',
        f'output [ {{ name: "{OUTPUT}" data_type: TYPE_FP32 dims: [ {signature.n_outputs} ] }} ]',
        f"dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}",
        f"instance_group [ {{ count: 1 kind: {instance} }} ]",
    ]
    lines += [
        f"parameters: {{ key: {_pbtxt_str(k)} value: {{ string_value: {_pbtxt_str(v)} }} }}"
        for k, v in params.items()
    ]
    return "\n".join(lines) + "\n"


def validate_torchscript(content: bytes, signature: Signature, field: str = "artifact_content") -> None:
    """Refuse an artifact that breaks the I/O contract (InvalidArgument naming ``field``)."""
    import torch

    try:
        module = torch.jit.load(io.BytesIO(content), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001 - any load failure means "not TorchScript"
        raise InvalidArgument(
            field, f"not a loadable TorchScript module: {type(exc).__name__}: {exc}"
        ) from None
    x = torch.zeros(2, signature.n_inputs, dtype=torch.float32)
    try:
        with torch.inference_mode():
            out = module(x)
    except Exception as exc:  # noqa: BLE001
        raise InvalidArgument(
            field, f"forward on float32 [2, {signature.n_inputs}] failed: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, signature.n_outputs):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InvalidArgument(field, f"forward must return [batch, {signature.n_outputs}], got {shape}")
    if not out.dtype.is_floating_point or not bool(torch.isfinite(out).all()):
        raise InvalidArgument(field, "forward must return finite floating-point values")
    if signature.task != "regression":
        sums = out.double().sum(dim=1)
        if bool(((out < -1e-6) | (out > 1 + 1e-6)).any()) or not torch.allclose(
            sums, torch.ones_like(sums), atol=1e-4
        ):
            raise InvalidArgument(field, "a classifier must return class probabilities (rows summing to 1)")


@dataclass(frozen=True)
class BundleFile:
    """One file of a version folder, stored as a blob: fetch it with DownloadArtifact."""

    path: str  # inside the version folder ("model.py", "model.pt")
    sha256: str
    size: int


@dataclass(frozen=True)
class ServingBundle:
    """What Triton needs to serve one version: its config (JSON) and its folder's files."""

    model_name: str
    version: int
    config: dict[str, Any]
    files: tuple[BundleFile, ...]


@dataclass(frozen=True)
class ExportResult:
    model_name: str
    version: int
    repository: Path
    version_dir: Path
    sha256: str
    # False when the entry was already there, byte for byte.
    written: bool


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: Path, content: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TritonExporter:
    """Triton entries from the artifact store: serving bundles, and folder exports (into
    ``root`` unless told another folder; idempotent, atomic per version folder)."""

    def __init__(
        self,
        root: Path,
        artifacts: ArtifactStore,
        *,
        instance_kind: InstanceKind = "cpu",
        max_batch_size: int = 256,
        max_queue_delay_us: int = 0,
        cpu_threads: int = 1,
    ) -> None:
        self.root = Path(root)
        self._artifacts = artifacts
        self._kind = instance_kind
        self._max_batch = max_batch_size
        self._delay = max_queue_delay_us
        self._threads = cpu_threads
        # One export at a time: two ExportModelVersion calls may race on a folder.
        self._lock = threading.Lock()
        self._model_py = ""  # digest of MODEL_PY once stored

    @property
    def instance_kind(self) -> InstanceKind:
        return self._kind

    def _options(self, version: ModelVersion, kind: InstanceKind | None) -> dict[str, Any]:
        return {
            "use_case": version.use_case,
            "kind": kind or self._kind,
            "max_batch_size": self._max_batch,
            "max_queue_delay_us": self._delay,
            "cpu_threads": self._threads,
        }

    def config(self, version: ModelVersion, kind: InstanceKind | None = None) -> str:
        """The version's config.pbtxt for ``kind`` (default: the configured instance kind)."""
        return render_config(version.name, version.signature, **self._options(version, kind))

    def bundle(self, version: ModelVersion, kind: InstanceKind | None = None) -> ServingBundle:
        """The serving bundle of ``version``: NotFound when its artifact is not stored,
        FailedPrecondition unless policy lets it serve (an APPROVED version).
        model.py is stored as a blob too, so every file travels the same verified way."""
        check_servable(version)
        weights = BundleFile(
            "model.pt", version.artifact_sha256, self._artifacts.size(version.artifact_sha256)
        )
        if not self._model_py or not self._artifacts.exists(self._model_py):
            self._model_py = self._artifacts.put(MODEL_PY.encode()).sha256
        code = BundleFile("model.py", self._model_py, len(MODEL_PY.encode()))
        config = config_json(version.name, version.signature, **self._options(version, kind))
        return ServingBundle(version.name, version.version, config, (code, weights))

    def is_exported(self, version: ModelVersion, root: Path | None = None) -> bool:
        vdir = (root or self.root) / version.name / str(version.version)
        model_pt, model_py = vdir / "model.pt", vdir / "model.py"
        return (
            model_pt.is_file()
            and model_py.is_file()
            and model_py.read_text() == MODEL_PY
            and _sha256_file(model_pt) == version.artifact_sha256
        )

    def export(
        self, version: ModelVersion, root: Path | None = None, lineage: dict[str, Any] | None = None
    ) -> ExportResult:
        check_servable(version)  # an entry here is loadable by any Triton pointed at it
        with self._lock:
            return self._export(version, Path(root or self.root), lineage)

    def _export(self, version: ModelVersion, repo: Path, lineage: dict[str, Any] | None) -> ExportResult:
        model_dir = repo / version.name
        vdir = model_dir / str(version.version)
        model_dir.mkdir(parents=True, exist_ok=True)
        written = False
        if not self.is_exported(version, repo):
            # Build the version folder beside its final place, then rename it in, so a
            # reader of the folder (a copy job, a Triton pointed at it) never sees half a version.
            stage = model_dir / f".staging-{uuid.uuid4().hex}"
            stage.mkdir()
            try:
                self._artifacts.copy_to(version.artifact_sha256, stage / "model.pt")
                (stage / "model.py").write_text(MODEL_PY)
                if vdir.exists():
                    shutil.rmtree(vdir)  # a stale or damaged copy
                os.replace(stage, vdir)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
            written = True
        if lineage is not None:
            _write_atomic(vdir / "lineage.json", json.dumps(lineage, indent=2, sort_keys=True, default=str))
        configs = {kind: self.config(version, kind) for kind in INSTANCE_KINDS}
        for kind, text in configs.items():
            _write_atomic(model_dir / f"config.{kind}.pbtxt", text)
        active = model_dir / "config.pbtxt"
        if not active.is_file() or active.read_text() != configs[self._kind]:
            _write_atomic(active, configs[self._kind])
        return ExportResult(version.name, version.version, repo, vdir, version.artifact_sha256, written)
