"""The networks the trainer builds and the exported module that embeds their preprocessing.

The artifact contract is in :mod:`libs.lifecycle.artifact`: raw model inputs in, NaN
imputed with the training mean and standardised inside the module, probabilities
(softmax) or de-standardised regression outputs out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn


class Preprocess(nn.Module):
    """Missing or non-finite input → training mean; then (x − mean) / std."""

    if TYPE_CHECKING:  # the buffers are tensors (nn.Module types attributes Tensor | Module)
        mean: torch.Tensor
        std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.to(torch.float32).clone())
        self.register_buffer("std", std.to(torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.where(torch.isfinite(x), x, self.mean)
        return (x - self.mean) / self.std


def _init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's default Linear init, drawn from ``generator`` instead of the global RNG,
    so concurrent code touching the global RNG cannot change the weights."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(layer.in_features) if layer.in_features else 0.0
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def build_network(
    family: str, n_inputs: int, hidden: Sequence[int], n_outputs: int, generator: torch.Generator
) -> nn.Sequential:
    """``mlp``: Linear–ReLU per hidden size, then a Linear head; ``linear``: one Linear."""
    sizes = [n_inputs, *(hidden if family == "mlp" else ())]
    layers: list[nn.Module] = []
    for width_in, width_out in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], n_outputs))
    net = nn.Sequential(*layers)
    for layer in net:
        if isinstance(layer, nn.Linear):
            _init_linear(layer, generator)
    return net


class ExportedModel(nn.Module):
    """Preprocessing + network + output transform: what Triton and the evaluator run."""

    # Constants for TorchScript: the branch on ``regression`` is resolved at scripting time.
    __constants__ = ["regression", "n_inputs"]

    def __init__(
        self,
        preprocess: Preprocess,
        net: nn.Module,
        *,
        regression: bool,
        y_mean: float = 0.0,
        y_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.net = net
        self.regression = regression
        self.n_inputs = int(preprocess.mean.shape[0])
        self.register_buffer("y_mean", torch.tensor(y_mean, dtype=torch.float32))
        self.register_buffer("y_std", torch.tensor(y_std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.size(1) != self.n_inputs:
            raise ValueError("expected float32 inputs of shape [batch, n_inputs]")
        z = self.net(self.preprocess(x))
        if self.regression:
            return z * self.y_std + self.y_mean
        return torch.softmax(z, dim=1)
