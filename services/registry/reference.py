"""Checks on the training reference statistics a version is registered with.

The statistics themselves (per-feature histograms and quantiles, category
frequencies, prediction distribution, training quality) are built by the trainer
with :func:`libs.reference.build_reference`, which owns their schema, and read by the
monitor through ``GetReferenceStats``. The registry stores them as a content-addressed
artifact and refuses, naming the key, a document that is not JSON, holds NaN, or does
not cover the version's model inputs (a one-hot group covers its ``columns``).
"""

from __future__ import annotations

import json
from typing import Any

from libs.errors import InvalidArgument
from services.registry.domain import Signature

MAX_REFERENCE_BYTES = 32 * 1024 * 1024


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_reference(
    content: bytes, signature: Signature, use_case: str, field: str = "reference_profile_content"
) -> dict[str, Any]:
    """The parsed document, or InvalidArgument naming the offending key under ``field``."""
    if len(content) > MAX_REFERENCE_BYTES:
        raise InvalidArgument(field, f"larger than {MAX_REFERENCE_BYTES} bytes")
    try:
        doc = json.loads(content, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(field, f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(field, "must be a JSON object")
    if doc.get("use_case", use_case) != use_case:
        raise InvalidArgument(f"{field}.use_case", f"is {doc['use_case']!r}, the version's is {use_case!r}")
    inputs = doc.get("inputs")
    if inputs is not None and list(inputs) != list(signature.input_names):
        raise InvalidArgument(f"{field}.inputs", "must be the version's model inputs, in order")
    features = doc.get("features")
    if not isinstance(features, dict):
        raise InvalidArgument(f"{field}.features", "must be an object of per-feature statistics")
    covered = set(features)
    for name, stats in features.items():
        if not isinstance(stats, dict):
            raise InvalidArgument(f"{field}.features.{name}", "must be an object")
        covered.update(stats.get("columns") or ())
    missing = [n for n in signature.input_names if n not in covered]
    if missing:
        raise InvalidArgument(f"{field}.features", f"no statistics for model inputs {missing}")
    return doc
