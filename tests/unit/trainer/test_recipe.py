"""Per-request overrides of the spec: applied, validated, recorded."""

from __future__ import annotations

import pytest

from libs.errors import InvalidArgument
from services.trainer.recipe import TrainConfig
from tests.training_sets import usecase

pytestmark = pytest.mark.timeout(30)


def test_spec_defaults_and_overrides() -> None:
    uc = usecase("loan_approval")
    base = TrainConfig.from_usecase(uc)
    assert (base.epochs, base.hidden, base.patience, base.batch_size) == (40, (64, 32), 4, 256)
    over = TrainConfig.from_usecase(
        uc, {"epochs": "5", "hidden": "8,4", "learning_rate": "0.01", "class_weight": "balanced"}, threads=2
    )
    assert (over.epochs, over.hidden, over.learning_rate, over.class_weight, over.threads) == (
        5,
        (8, 4),
        0.01,
        "balanced",
        2,
    )
    assert over.as_params()["hidden"] == "8,4" and over.as_params()["epochs"] == "5"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"epochz": "1"}, "params.epochz"),
        ({"epochs": "zero"}, "params.epochs"),
        ({"epochs": "0"}, "params.epochs"),
        ({"hidden": "a,b"}, "params.hidden"),
        ({"validation_fraction": "0.95"}, "params.validation_fraction"),
        ({"class_weight": "heavy"}, "params.class_weight"),
    ],
)
def test_bad_overrides_name_the_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        TrainConfig.from_usecase(usecase("loan_approval"), params)
    assert info.value.field == field
