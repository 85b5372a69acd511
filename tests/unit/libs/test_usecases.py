"""libs.usecase.UseCases.require: one lookup, one typed error, everywhere."""

from __future__ import annotations

import grpc
import pytest

from libs.errors import NotFound
from libs.usecase import UnknownUseCase, load_default


def test_require_returns_the_use_case_or_raises_not_found_naming_the_field() -> None:
    usecases = load_default()
    assert usecases.require("loan_approval").name == "loan_approval"
    with pytest.raises(UnknownUseCase) as caught:
        usecases.require("nope", field="model.use_case")
    err = caught.value
    assert isinstance(err, NotFound) and err.code == grpc.StatusCode.NOT_FOUND
    assert err.field == "model.use_case" and err.name == "nope"
    assert err.message == "model.use_case: unknown use case 'nope' (known: image_segments, loan_approval)"
