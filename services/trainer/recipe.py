"""The training recipe: the use case's model and training spec, with per-request overrides.

Everything that decides the weights besides the data and the seed (architecture,
optimiser settings, validation split, class weighting, thread count): it is recorded
with the run and the version, so a training can be repeated bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import ValidationError

from libs.errors import InvalidArgument
from libs.usecase import UseCase
from libs.usecase.model import ModelSpec, TrainingSpec

# Request params (TrainingRequested.params) a caller may override, and where they go.
_MODEL_KEYS = {
    "family",
    "hidden",
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "early_stopping_patience",
}
_TRAINING_KEYS = {"validation_fraction", "min_rows"}
_OWN_KEYS = {"class_weight"}
OVERRIDABLE = sorted(_MODEL_KEYS | _TRAINING_KEYS | _OWN_KEYS)


@dataclass(frozen=True)
class TrainConfig:
    family: str
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int
    validation_fraction: float
    min_rows: int
    # "none" keeps probabilities calibrated (the evaluator gates calibration); "balanced"
    # weighs classes by inverse frequency, trading calibration for minority recall.
    class_weight: Literal["none", "balanced"] = "none"
    # Intra-op threads: part of the recipe, since a different count may change the bits.
    threads: int = 1

    @classmethod
    def from_usecase(
        cls, uc: UseCase, params: Mapping[str, str] | None = None, *, threads: int = 1
    ) -> TrainConfig:
        """The spec's settings with ``params`` applied; ``InvalidArgument("params.<key>")``
        names an unknown key or a bad value."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(OVERRIDABLE))
        if unknown:
            raise InvalidArgument(
                f"params.{unknown[0]}", f"not an overridable parameter; one of {OVERRIDABLE}"
            )
        model = _validated(
            ModelSpec, uc.model.model_dump(), {k: _parse(k, v) for k, v in params.items() if k in _MODEL_KEYS}
        )
        training = _validated(
            TrainingSpec, uc.training.model_dump(), {k: v for k, v in params.items() if k in _TRAINING_KEYS}
        )
        class_weight = params.get("class_weight", "none")
        if class_weight not in ("none", "balanced"):
            raise InvalidArgument("params.class_weight", f"{class_weight!r} is not 'none' or 'balanced'")
        return cls(
            family=model.family,
            hidden=tuple(model.hidden),
            epochs=model.epochs,
            batch_size=model.batch_size,
            learning_rate=model.learning_rate,
            weight_decay=model.weight_decay,
            patience=model.early_stopping_patience,
            validation_fraction=training.validation_fraction,
            min_rows=training.min_rows,
            class_weight=class_weight,  # type: ignore[arg-type]
            threads=threads,
        )

    @property
    def labelled_rows_needed(self) -> int:
        """Labelled rows a window must hold so that ``min_rows`` remain for training once
        the validation share is split off."""
        return math.ceil(self.min_rows / (1 - self.validation_fraction)) + 1

    def as_params(self) -> dict[str, str]:
        """Every setting as strings: what the run and the version record."""
        out = {k: str(v) for k, v in asdict(self).items()}
        out["hidden"] = ",".join(str(h) for h in self.hidden)
        return out


def _parse(key: str, value: str) -> Any:
    if key == "hidden":
        try:
            return [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise InvalidArgument(
                "params.hidden", f"{value!r} is not a comma-separated list of sizes"
            ) from None
    return value


def _validated(
    cls: type[ModelSpec] | type[TrainingSpec], base: dict[str, Any], overrides: dict[str, Any]
) -> Any:
    try:
        return cls.model_validate({**base, **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"][:1]) or "?"
        raise InvalidArgument(f"params.{field}", err["msg"]) from None
