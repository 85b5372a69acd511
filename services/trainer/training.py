"""The ML core: a labelled frame in, a TorchScript artifact with its metrics and reference out.

Pure: no I/O, no service state. Reproducible: the same frame (in any row order), use
case, config and seed give bit-identical weights and artifact bytes. That rests on
- a canonical row order (:func:`libs.lifecycle.frames.canonical_order`);
- every random draw (initial weights, batch order) from one seeded ``torch.Generator``,
  never from the global RNG;
- ``torch.use_deterministic_algorithms(True)`` and a fixed intra-op thread count
  while training (both process-wide, so the service runs one training at a time).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from libs.errors import FailedPrecondition
from libs.lifecycle import artifact
from libs.lifecycle.frames import (
    EVENT_TIME,
    canonical_order,
    check_columns,
    class_names,
    encode_labels,
    feature_matrix,
    labelled,
)
from libs.lifecycle.metrics import quality, standard_metrics
from libs.reference import build_reference
from libs.usecase import UseCase
from services.trainer.model import ExportedModel, Preprocess, build_network
from services.trainer.recipe import TrainConfig

log = logging.getLogger(__name__)

# An improvement of the validation loss smaller than this does not reset patience.
MIN_DELTA = 1e-6
# Patience counts epochs, but an epoch of a small training set (a drift retraining on the
# data after a change point) is only a few optimizer steps: early stopping never ends a
# training before this many steps in a row without improvement. (With 520 rows and
# batches of 256, four epochs are 12 steps: a seed whose first steps barely move stopped
# at epoch 5 with a model that had learnt nothing.)
MIN_PATIENCE_STEPS = 24


def effective_patience(patience: int, rows: int, batch_size: int) -> int:
    """Epochs without improvement before stopping: ``patience``, or more for a small set."""
    steps_per_epoch = max(1, math.ceil(rows / batch_size))
    return max(patience, math.ceil(MIN_PATIENCE_STEPS / steps_per_epoch))


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_metric: float
    samples_per_s: float
    seconds: float


@dataclass
class TrainResult:
    module: torch.jit.ScriptModule
    artifact: bytes
    artifact_sha256: str
    state_dict: dict[str, torch.Tensor]
    epochs: list[EpochMetrics]
    best_epoch: int
    stopped_early: bool
    # Final metrics of the restored (best) model on the validation split, by name.
    metrics: dict[str, float]
    reference: dict[str, Any]
    seed: int
    config: TrainConfig
    train_rows: int
    val_rows: int
    # Training throughput: rows × epochs over the time spent in optimisation steps, and
    # over the whole epoch loop (steps + validation + progress callbacks).
    samples_per_s: float
    loop_samples_per_s: float
    duration_s: float
    metadata: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the block; previous settings restored."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(was_threads)


def split_by_time(frame: pd.DataFrame, validation_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Oldest rows for training, the newest ``validation_fraction`` for validation.

    ``frame`` must be in canonical (event-time) order.
    """
    n_val = max(1, int(round(len(frame) * validation_fraction)))
    return frame.iloc[: len(frame) - n_val].reset_index(drop=True), frame.iloc[
        len(frame) - n_val :
    ].reset_index(drop=True)


def input_statistics(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std over finite values; an all-missing column gets mean 0,
    a constant one std 1 (so standardising never divides by zero)."""
    values = np.where(np.isfinite(matrix), matrix, np.nan).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": handled below
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def _prior_bias(counts: np.ndarray) -> torch.Tensor:
    """Log class priors (add-one smoothed): the untrained model predicts the base rates."""
    prior = (counts + 1.0) / (counts.sum() + len(counts))
    return torch.tensor(np.log(prior), dtype=torch.float32)


def _balanced_weights(counts: np.ndarray) -> torch.Tensor:
    present = counts > 0
    weights = np.ones(len(counts), dtype=np.float64)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def train(
    frame: pd.DataFrame,
    uc: UseCase,
    config: TrainConfig,
    *,
    seed: int,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> TrainResult:
    """Train a model for ``uc`` on ``frame`` (the training window; see libs.lifecycle.frames).

    Early stopping on the validation loss with ``config.patience``; the best epoch's
    weights are kept. Raises ``FailedPrecondition`` when the data cannot train a
    model (too few rows, a single class) and ``InvalidArgument`` for a frame that
    breaks the contract.
    """
    started = time.perf_counter()
    check_columns(frame, uc)
    rows = canonical_order(labelled(frame))
    train_frame, val_frame = split_by_time(rows, config.validation_fraction)
    if len(train_frame) < config.min_rows:
        raise FailedPrecondition(
            f"{uc.name}: {len(train_frame)} training rows, the spec needs training.min_rows={config.min_rows}"
        )
    x_train, x_val = feature_matrix(train_frame, uc), feature_matrix(val_frame, uc)
    y_train, y_val = encode_labels(train_frame["label"], uc), encode_labels(val_frame["label"], uc)
    regression = uc.task == "regression"
    n_outputs = 1 if regression else len(class_names(uc))
    if not regression:
        counts = np.bincount(y_train, minlength=n_outputs).astype(np.float64)
        if (counts > 0).sum() < 2:
            raise FailedPrecondition(f"{uc.name}: the training window holds a single class")
        y_mean, y_std = 0.0, 1.0
    else:
        counts = np.zeros(0)
        y_mean, y_std = float(np.mean(y_train)), float(np.std(y_train)) or 1.0

    with deterministic(config.threads):
        generator = torch.Generator().manual_seed(seed)
        mean, std = input_statistics(x_train)
        preprocess = Preprocess(torch.from_numpy(mean), torch.from_numpy(std))
        with torch.no_grad():
            xt, xv = preprocess(torch.from_numpy(x_train)), preprocess(torch.from_numpy(x_val))
        if regression:
            yt = torch.from_numpy(((y_train - y_mean) / y_std).astype(np.float32)).reshape(-1, 1)
            yv = torch.from_numpy(((y_val - y_mean) / y_std).astype(np.float32)).reshape(-1, 1)
            loss_fn: nn.Module = nn.MSELoss()
            val_loss_fn: nn.Module = nn.MSELoss()
        else:
            yt, yv = torch.from_numpy(y_train), torch.from_numpy(y_val)
            weight = _balanced_weights(counts) if config.class_weight == "balanced" else None
            loss_fn, val_loss_fn = nn.CrossEntropyLoss(weight=weight), nn.CrossEntropyLoss()

        net = build_network(config.family, xt.shape[1], config.hidden, n_outputs, generator)
        head = net[-1]
        if not regression and isinstance(head, nn.Linear):  # always a Linear (build_network)
            with torch.no_grad():
                head.bias.copy_(_prior_bias(counts))
        optimizer = torch.optim.Adam(
            net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        history, best_state, best_loss, best_epoch, waited = [], None, float("inf"), 0, 0
        n = xt.shape[0]
        patience = effective_patience(config.patience, n, config.batch_size)
        loop_started = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            tick = time.perf_counter()
            net.train()
            order = torch.randperm(n, generator=generator)
            running = torch.zeros(())
            for start in range(0, n, config.batch_size):
                index = order[start : start + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(xt[index]), yt[index])
                loss.backward()
                optimizer.step()
                running += loss.detach() * len(index)
            seconds = time.perf_counter() - tick
            net.eval()
            with torch.no_grad():
                out = net(xv)
                val_loss = float(val_loss_fn(out, yv))
                output = (out * y_std + y_mean) if regression else torch.softmax(out, dim=1)
            metrics = EpochMetrics(
                epoch,
                float(running) / n,
                val_loss,
                quality(uc.evaluation.metric, y_val, output.numpy()),
                n / seconds if seconds > 0 else float("inf"),
                seconds,
            )
            history.append(metrics)
            log.info(
                "%s epoch %d/%d train_loss=%.4f val_loss=%.4f val_%s=%.4f %.0f samples/s",
                uc.name,
                epoch,
                config.epochs,
                metrics.train_loss,
                val_loss,
                uc.evaluation.metric,
                metrics.val_metric,
                metrics.samples_per_s,
            )
            if on_epoch is not None:
                on_epoch(metrics)
            if val_loss < best_loss - MIN_DELTA:
                best_loss, best_epoch, waited = val_loss, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                waited += 1
                if waited >= patience:
                    break
        loop_seconds = time.perf_counter() - loop_started
        if best_state is None:
            raise FailedPrecondition(f"{uc.name}: training diverged (validation loss {history[-1].val_loss})")
        net.load_state_dict(best_state)
        net.eval()
        exported = ExportedModel(preprocess, net, regression=regression, y_mean=y_mean, y_std=y_std)
        # Inference only: a caller that forgets no_grad must not build autograd graphs.
        exported.requires_grad_(False)
        scripted = torch.jit.script(exported)
        meta = {
            "use_case": uc.name,
            "task": uc.task,
            "inputs": uc.model_inputs(),
            "outputs": class_names(uc) or [uc.label.field],
            "seed": seed,
            "params": config.as_params(),
        }
        data = artifact.save(scripted, meta)
        val_output = artifact.predict(scripted, x_val)
        train_output = artifact.predict(scripted, x_train)

    final = standard_metrics(uc.task, y_val, val_output)
    final[uc.evaluation.metric] = quality(uc.evaluation.metric, y_val, val_output)
    final["best_epoch"] = float(best_epoch)
    final["epochs"] = float(len(history))
    final["train_loss"] = history[best_epoch - 1].train_loss
    final["val_loss"] = best_loss
    reference = build_reference(
        train_frame,
        uc,
        train_output,
        seed=seed,
        quality={
            "metric": uc.evaluation.metric,
            "value": final[uc.evaluation.metric],
            "split": "validation",
            "rows": len(val_frame),
        },
    )
    reference["training_window"] = {
        "start": str(train_frame[EVENT_TIME].min()),
        "end": str(val_frame[EVENT_TIME].max()),
    }
    trained = sum(len(train_frame) for _ in history)
    train_seconds = sum(m.seconds for m in history)
    return TrainResult(
        module=scripted,
        artifact=data,
        artifact_sha256=artifact.sha256(data),
        state_dict={k: v.detach().clone() for k, v in net.state_dict().items()},
        epochs=history,
        best_epoch=best_epoch,
        stopped_early=len(history) < config.epochs,
        metrics=final,
        reference=reference,
        seed=seed,
        config=config,
        train_rows=len(train_frame),
        val_rows=len(val_frame),
        samples_per_s=trained / train_seconds if train_seconds > 0 else float("inf"),
        loop_samples_per_s=trained / loop_seconds if loop_seconds > 0 else float("inf"),
        duration_s=time.perf_counter() - started,
        metadata=meta,
    )
