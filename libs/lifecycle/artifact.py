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
from typing import Any

import numpy as np
import torch

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
    """The ``aif.json`` stored with an artifact (empty when absent)."""
    files = {METADATA_FILE: ""}
    torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=files)
    return json.loads(files[METADATA_FILE]) if files[METADATA_FILE] else {}


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
