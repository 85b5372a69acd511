"""The ML core: reproducible, early-stopping, and an artifact that preprocesses by itself."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from libs.errors import FailedPrecondition
from libs.lifecycle import artifact
from libs.lifecycle.frames import canonical_order, feature_matrix
from services.trainer.model import ExportedModel, Preprocess, build_network
from services.trainer.recipe import TrainConfig
from services.trainer.training import effective_patience, split_by_time, train
from tests.training_sets import (
    loan_frame,
    regression_frame,
    regression_usecase,
    segment_frame,
    usecase,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def loan():  # type: ignore[no-untyped-def]
    uc = usecase("loan_approval")
    return uc, loan_frame(2500), TrainConfig.from_usecase(uc, {"epochs": "8"})


def test_same_data_and_seed_give_bit_identical_weights(loan) -> None:  # type: ignore[no-untyped-def]
    uc, frame, config = loan
    a = train(frame, uc, config, seed=7)
    # The same rows in another order, as a store might return them.
    b = train(frame.sample(frac=1.0, random_state=5), uc, config, seed=7)
    assert a.state_dict.keys() == b.state_dict.keys()
    for name in a.state_dict:
        assert torch.equal(a.state_dict[name], b.state_dict[name]), name
    assert a.artifact_sha256 == b.artifact_sha256
    assert [e.val_loss for e in a.epochs] == [e.val_loss for e in b.epochs]
    c = train(frame, uc, config, seed=8)
    assert not torch.equal(a.state_dict["0.weight"], c.state_dict["0.weight"])


def test_learns_the_loan_rule_with_metrics_and_reference(loan) -> None:  # type: ignore[no-untyped-def]
    uc, frame, config = loan
    result = train(frame, uc, config, seed=7)
    assert result.metrics["auc"] > 0.9
    assert len(result.epochs) <= 8 and result.epochs[0].epoch == 1
    assert all(e.samples_per_s > 0 and np.isfinite(e.train_loss) for e in result.epochs)
    assert result.train_rows == 2000 and result.val_rows == 500
    assert result.reference["quality"]["value"] == pytest.approx(result.metrics["auc"])
    assert result.reference["rows"] == 2000
    meta = artifact.metadata(result.artifact)
    assert meta["inputs"] == uc.model_inputs() and meta["outputs"] == ["0", "1"] and meta["seed"] == 7


def test_validation_is_the_newest_slice() -> None:
    frame = canonical_order(loan_frame(100))
    train_part, val = split_by_time(frame, 0.2)
    assert len(val) == 20 and train_part["event_time"].max() <= val["event_time"].min()


def test_early_stopping_keeps_the_best_epoch() -> None:
    uc = usecase("loan_approval")
    frame = loan_frame(1500)
    # Labels that are noise: validation loss stops improving almost at once.
    frame["label"] = np.random.default_rng(0).integers(0, 2, len(frame))
    config = TrainConfig.from_usecase(
        uc, {"epochs": "200", "early_stopping_patience": "3", "learning_rate": "0.01", "hidden": "128,128"}
    )
    result = train(frame, uc, config, seed=1)
    assert result.stopped_early and len(result.epochs) < 200
    # 1,200 training rows are 5 steps an epoch: patience 3 becomes 5 (24 optimizer steps).
    patience = effective_patience(3, rows=1_200, batch_size=config.batch_size)
    assert patience == 5 and len(result.epochs) == result.best_epoch + patience
    best = min(e.val_loss for e in result.epochs)
    assert result.epochs[result.best_epoch - 1].val_loss == best
    # The weights returned are the best epoch's: their validation loss is the best one.
    assert result.metrics["val_loss"] == pytest.approx(best)
    assert result.metrics["log_loss"] == pytest.approx(best, rel=1e-4)


def test_artifact_imputes_nan_and_matches_the_eager_model(loan) -> None:  # type: ignore[no-untyped-def]
    uc, frame, config = loan
    result = train(frame, uc, config, seed=7)
    module = artifact.load(result.artifact)
    x = feature_matrix(frame.iloc[:64], uc)
    x[0, 0] = np.nan
    x[1, :] = np.nan
    x[2, 3] = np.inf
    out = artifact.predict(module, x)
    assert out.shape == (64, 2) and np.isfinite(out).all()
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-6)
    # NaN is the training mean: the same output as passing the mean itself.
    mean = module.preprocess.mean.numpy()
    filled = x.copy()
    filled[0, 0], filled[2, 3] = mean[0], mean[3]
    filled[1, :] = mean
    assert np.array_equal(artifact.predict(module, filled), out)
    # Eager module built from the same parts gives the same numbers.
    pre = Preprocess(module.preprocess.mean, module.preprocess.std)
    net = build_network("mlp", x.shape[1], list(uc.model.hidden), 2, torch.Generator().manual_seed(0))
    net.load_state_dict(result.state_dict)
    eager = ExportedModel(pre, net, regression=False).eval()
    with torch.no_grad():
        expected = eager(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    # By hand: impute, standardise, network, softmax.
    with torch.no_grad():
        xt = torch.from_numpy(filled)
        z = net((xt - pre.mean) / pre.std)
        np.testing.assert_allclose(out, torch.softmax(z, dim=1).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(torch.jit.Error):
        module(torch.zeros(2, 3))
    # A reloaded artifact (what Triton loads) answers the same.
    reloaded = torch.jit.load(io.BytesIO(result.artifact))
    assert np.array_equal(reloaded(torch.from_numpy(x)).numpy(), out.astype(np.float32))


def test_multiclass_and_regression() -> None:
    seg = usecase("image_segments")
    result = train(segment_frame(1500), seg, TrainConfig.from_usecase(seg, {"epochs": "15"}), seed=11)
    assert result.metrics["accuracy"] > 0.8
    out = artifact.predict(result.module, feature_matrix(segment_frame(20), seg))
    assert out.shape == (20, 7) and np.allclose(out.sum(axis=1), 1, atol=1e-6)
    ruc = regression_usecase()
    rframe = regression_frame(1500)
    r = train(rframe, ruc, TrainConfig.from_usecase(ruc, {"epochs": "15"}), seed=3)
    pred = artifact.predict(r.module, feature_matrix(rframe, ruc))
    assert pred.shape == (1500, 1)
    # De-standardised: predictions are in label units.
    assert abs(pred.mean() - rframe["label"].mean()) < 0.2 * rframe["label"].std()
    assert r.metrics["mae"] < rframe["label"].std()


def test_too_few_rows_or_one_class_is_refused() -> None:
    uc = usecase("loan_approval")
    with pytest.raises(FailedPrecondition, match="min_rows"):
        train(loan_frame(300), uc, TrainConfig.from_usecase(uc), seed=1)
    frame = loan_frame(1000)
    frame["label"] = 1
    with pytest.raises(FailedPrecondition, match="single class"):
        train(frame, uc, TrainConfig.from_usecase(uc), seed=1)


def test_balanced_class_weights_raise_minority_recall() -> None:
    uc = usecase("loan_approval")
    frame = loan_frame(2000)
    # Make class 1 rare: keep one positive in eight.
    positives = frame.index[frame["label"] == 1]
    frame = frame.drop(positives[positives % 8 != 0])
    plain = train(frame, uc, TrainConfig.from_usecase(uc, {"epochs": "5", "min_rows": "100"}), seed=2)
    balanced = train(
        frame,
        uc,
        TrainConfig.from_usecase(uc, {"epochs": "5", "min_rows": "100", "class_weight": "balanced"}),
        seed=2,
    )
    x = feature_matrix(frame, uc)
    y = frame["label"].to_numpy()
    recall = lambda r: float(((artifact.predict(r.module, x)[:, 1] > 0.5) & (y == 1)).sum() / (y == 1).sum())  # noqa: E731
    assert recall(balanced) >= recall(plain)


def test_patience_is_never_fewer_than_a_minimum_of_optimizer_steps() -> None:
    assert effective_patience(4, rows=1_600, batch_size=256) == 4  # 7 steps an epoch: as the spec says
    assert effective_patience(4, rows=520, batch_size=256) == 8  # 3 steps an epoch: 24 steps
