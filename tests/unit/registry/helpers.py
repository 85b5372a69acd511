"""Test material for the registry: use cases, TorchScript models that follow the I/O
contract (services/registry/export.py), reference statistics, principals."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from libs.reference import build_reference
from libs.rpc.auth import Principal
from libs.usecase import DEFAULT_DIR, UseCase, UseCases

AUTO, GATED = "loan_auto", "loan_gated"


def _spec(name: str, promotion: str) -> dict[str, Any]:
    data = yaml.safe_load((DEFAULT_DIR / "loan_approval.yaml").read_text())
    data["name"] = name
    data["deployment"]["promotion"] = promotion
    return data


def usecases() -> UseCases:
    """Two variants of the shipped loan spec: auto promotion and approval."""
    return UseCases(
        {
            AUTO: UseCase.model_validate(_spec(AUTO, "auto")),
            GATED: UseCase.model_validate(_spec(GATED, "approval")),
        }
    )


def write_usecases(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, promotion in ((AUTO, "auto"), (GATED, "approval")):
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(_spec(name, promotion)))
    return directory


def torchscript_model(uc: UseCase, *, seed: int = 0, hidden: int = 8) -> bytes:
    """A small MLP: NaN → training mean, standardisation and softmax embedded."""
    import torch

    n_in = len(uc.model_inputs())
    n_out = 1 if uc.task == "regression" else len(uc.label.classes or ())
    classify = uc.task != "regression"

    class Mlp(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            generator = torch.Generator().manual_seed(seed)
            self.register_buffer("mean", torch.rand(n_in, generator=generator) * 10)
            self.register_buffer("std", torch.rand(n_in, generator=generator) + 0.5)
            self.hidden = torch.nn.Linear(n_in, hidden)
            self.out = torch.nn.Linear(hidden, n_out)
            self.classify = classify

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.where(torch.isnan(x), self.mean.expand_as(x), x)
            y = self.out(torch.relu(self.hidden((x - self.mean) / self.std)))
            return torch.softmax(y, dim=1) if self.classify else y

    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(Mlp().eval()), buffer)
    return buffer.getvalue()


def reference_doc(uc: UseCase, rows: int = 200, seed: int = 0) -> dict[str, Any]:
    """Reference statistics built the trainer's way (libs.reference.build_reference)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.random((rows, len(uc.model_inputs()))), columns=uc.model_inputs())
    predictions = rng.dirichlet(np.ones(len(uc.label.classes or ())), size=rows)
    return build_reference(frame, uc, predictions, quality={"value": 0.8, "rows": rows}, seed=seed)


def principal(subject: str, *roles: str, use_case: str = "*") -> Principal:
    return Principal(subject, scopes={use_case: frozenset(roles)})
