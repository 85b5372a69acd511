"""The model artifact: a TorchScript module that embeds its own preprocessing.

Contract (shared with the registry's Triton export and the gateway):
input float32 ``[batch, len(uc.model_inputs())]`` of raw model inputs in
``uc.model_inputs()`` order, NaN (or ±inf) allowed; output float32 probabilities
``[batch, n_classes]`` in ``uc.label.classes`` order for classification, or
``[batch, 1]`` in label units for regression. The archive also carries
``extra/aif.json`` (use case, task, inputs, classes) so a reader can check the
contract without the spec.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import numpy as np
import torch

from libs import sandbox
from libs.errors import InvalidArgument

METADATA_FILE = "aif.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save(module: torch.jit.ScriptModule, metadata: dict[str, Any]) -> bytes:
    """Serialise a scripted module with its metadata; same module and metadata → same bytes."""
    buffer = io.BytesIO()
    torch.jit.save(module, buffer, _extra_files={METADATA_FILE: json.dumps(metadata, sort_keys=True)})
    return buffer.getvalue()


def load(data: bytes) -> torch.jit.ScriptModule:
    """Load an artifact on the CPU; ``InvalidArgument`` when the bytes are not TorchScript."""
    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise InvalidArgument("artifact", f"not a TorchScript archive: {exc}") from None
    module.eval()
    return module


def metadata(data: bytes) -> dict[str, Any]:
    """The ``aif.json`` stored with an artifact (empty when absent).

    Read from the zip archive as a file, not with ``torch.jit.load``: loading compiles the
    artifact's code, which only a sandbox may do (:func:`predict_isolated`)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{METADATA_FILE}")]
            if not names:
                return {}
            parsed = json.loads(archive.read(names[0]))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InvalidArgument("artifact", f"not a TorchScript archive: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument("artifact", f"{METADATA_FILE} is not a JSON object")
    return parsed


def predict(module: torch.jit.ScriptModule, matrix: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Run the module over a float32 matrix in batches; returns float64 outputs."""
    if matrix.ndim != 2:
        raise InvalidArgument("features", f"expected a 2-d matrix, got shape {matrix.shape}")
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(matrix), batch_size):
            chunk = torch.from_numpy(
                np.ascontiguousarray(matrix[start : start + batch_size], dtype=np.float32)
            )
            outputs.append(module(chunk).numpy().astype(np.float64))
    if not outputs:
        return np.zeros((0, 1), dtype=np.float64)
    return np.concatenate(outputs)


def predict_isolated(
    data: bytes,
    matrix: np.ndarray,
    limits: sandbox.Limits = sandbox.Limits(),  # noqa: B008 - frozen dataclass
    field: str = "artifact",
) -> np.ndarray:
    """:func:`predict` of the artifact ``data`` in a sandboxed child process (load and
    forward passes): an artifact is code, and a service loads it only there.
    ``InvalidArgument`` (:class:`libs.sandbox.SandboxRefused`) when it breaks a limit."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2:
        raise InvalidArgument("features", f"expected a 2-d matrix, got shape {matrix.shape}")
    buffer = io.BytesIO()
    np.savez(buffer, artifact=np.frombuffer(data, dtype=np.uint8), matrix=matrix)
    out = sandbox.run(
        f"{__name__}:_predict_in_child",
        buffer.getvalue(),
        limits=limits,
        field=field,
        what="artifact scoring",
    )
    with np.load(io.BytesIO(out.data), allow_pickle=False) as result:
        return np.asarray(result["output"], dtype=np.float64)


def _predict_in_child(payload: bytes) -> bytes:
    """Runs inside the sandbox only."""
    torch.set_num_threads(1)
    with np.load(io.BytesIO(payload), allow_pickle=False) as parts:
        module, matrix = load(parts["artifact"].tobytes()), parts["matrix"]
    out = io.BytesIO()
    np.savez(out, output=predict(module, matrix))
    return out.getvalue()
