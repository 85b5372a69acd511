"""Use cases are specs, not code: one YAML file per AI application.

>>> from libs.usecase import load_usecases, spec_files, DEFAULT_DIR
>>> usecases = load_usecases(spec_files(DEFAULT_DIR))
>>> usecases["loan_approval"].deployment.promotion
'auto'

The shipped specs live in ``deploy/usecases/``; ``aif usecase new NAME`` scaffolds
one from ``libs/usecase/template.yaml``.
"""
from __future__ import annotations

from pathlib import Path

from libs.errors import ConfigError
from libs.usecase.loader import UseCaseError, load_usecase, load_usecases, parse_usecase, spec_files
from libs.usecase.model import AggregateFeature, FieldSpec, RowFeature, UseCase

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "deploy" / "usecases"
TEMPLATE = Path(__file__).with_name("template.yaml")


def load_default(directory: Path | None = None) -> dict[str, UseCase]:
    return load_usecases(spec_files(directory or DEFAULT_DIR))


def load_for_service(directory: Path | None = None) -> dict[str, UseCase]:
    """:func:`load_default` for a starting service: a bad spec is a configuration error,
    so the service stops at start with the spec's file, line and key."""
    try:
        return load_default(directory)
    except UseCaseError as exc:
        raise ConfigError(f"invalid use case spec: {exc.message}") from None


__all__ = [
    "DEFAULT_DIR",
    "TEMPLATE",
    "AggregateFeature",
    "FieldSpec",
    "RowFeature",
    "UseCase",
    "UseCaseError",
    "load_default",
    "load_for_service",
    "load_usecase",
    "load_usecases",
    "parse_usecase",
    "spec_files",
]
