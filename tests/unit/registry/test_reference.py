"""Reference statistics are accepted when they cover the version's inputs, refused by key otherwise."""

from __future__ import annotations

import json

import pytest

from libs.errors import InvalidArgument
from services.registry.core import signature_of
from services.registry.reference import check_reference
from tests.unit.registry.helpers import AUTO, reference_doc, usecases

UC = usecases()[AUTO]
SIG = signature_of(UC)


def test_the_trainers_reference_is_accepted() -> None:
    doc = reference_doc(UC)
    assert check_reference(json.dumps(doc).encode(), SIG, AUTO)["inputs"] == UC.model_inputs()


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["features"].pop("salary"), "reference_profile_content.features"),
        (lambda d: d["features"].pop("elevel"), "reference_profile_content.features"),
        (lambda d: d.update(inputs=list(reversed(d["inputs"]))), "reference_profile_content.inputs"),
        (lambda d: d.update(use_case="other"), "reference_profile_content.use_case"),
        (lambda d: d.update(features=[]), "reference_profile_content.features"),
    ],
)
def test_a_reference_that_does_not_fit_is_refused_naming_the_key(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    doc = reference_doc(UC)
    mutate(doc)
    with pytest.raises(InvalidArgument) as info:
        check_reference(json.dumps(doc).encode(), SIG, AUTO)
    assert info.value.field == field


def test_non_json_and_nan_are_refused() -> None:
    for content in (b"{", b'{"features": NaN}', b"[1, 2]"):
        with pytest.raises(InvalidArgument) as info:
            check_reference(content, SIG, AUTO)
        assert info.value.field == "reference_profile_content"
