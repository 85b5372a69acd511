"""train.samples_per_s: the trainer's training loop vs a plain PyTorch loop, same data and model.

Both train the loan-approval MLP on the same standardised rows, with the same batch size,
optimizer, loss, initial weights and thread count, for the same number of epochs (early
stopping off). The trainer's figure counts its whole epoch loop — optimisation steps,
per-epoch validation (loss and the use case's metric), progress callbacks — while the
baseline only steps. Rounds alternate and the median of each is reported, so load from
elsewhere on the machine hits both alike.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import nn

from libs.lifecycle.frames import canonical_order, encode_labels, feature_matrix, labelled
from services.trainer.model import Preprocess, build_network
from services.trainer.recipe import TrainConfig
from services.trainer.training import deterministic, input_statistics, split_by_time, train
from tests.bench.report import Figure
from tests.training_sets import loan_frame, usecase

ROWS = 8_000
EPOCHS = 25
ROUNDS = 3
SEED = 7


def _plain_loop(x: torch.Tensor, y: torch.Tensor, config: TrainConfig, n_inputs: int) -> float:
    """The textbook loop: shuffle, batch, forward, loss, backward, step. Returns samples/s."""
    generator = torch.Generator().manual_seed(SEED)
    net = build_network(config.family, n_inputs, config.hidden, 2, generator)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0]
    started = time.perf_counter()
    for _ in range(config.epochs):
        net.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(net(x[index]), y[index])
            loss.backward()
            optimizer.step()
            total += loss.item()
    return n * config.epochs / (time.perf_counter() - started)


def measure_training() -> list[Figure]:
    uc = usecase("loan_approval")
    frame = loan_frame(ROWS)
    config = TrainConfig.from_usecase(uc, {"epochs": str(EPOCHS), "early_stopping_patience": str(EPOCHS)})
    # The baseline gets exactly the rows the trainer trains on, already standardised.
    train_part, _ = split_by_time(canonical_order(labelled(frame)), config.validation_fraction)
    raw = feature_matrix(train_part, uc)
    mean, std = input_statistics(raw)
    with torch.no_grad():
        x = Preprocess(torch.from_numpy(mean), torch.from_numpy(std))(torch.from_numpy(raw))
    y = torch.from_numpy(encode_labels(train_part["label"], uc))

    ours, plain = [], []
    train(frame.iloc[:1000], uc, TrainConfig.from_usecase(uc, {"epochs": "1", "min_rows": "10"}), seed=SEED)
    for _ in range(ROUNDS):
        result = train(frame, uc, config, seed=SEED)
        assert len(result.epochs) == EPOCHS
        ours.append(result.loop_samples_per_s)
        with deterministic(config.threads):
            plain.append(_plain_loop(x, y, config, raw.shape[1]))
    return [
        Figure(
            "train.samples_per_s",
            float(statistics.median(ours)),
            "samples/s",
            "torch.plain_loop_samples_per_s",
            float(statistics.median(plain)),
        )
    ]


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    for figure in measure_training():
        print(figure, f"ratio={figure.ratio:.3f}")
