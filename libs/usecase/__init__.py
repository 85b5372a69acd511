"""Use cases are specs, not code: one YAML file per AI application.

>>> from libs.usecase import load_usecases, spec_files, DEFAULT_DIR
>>> usecases = load_usecases(spec_files(DEFAULT_DIR))
>>> usecases["loan_approval"].deployment.promotion
'auto'

The shipped specs live in ``deploy/usecases/``; ``aif usecase new NAME`` scaffolds
one from ``libs/usecase/template.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from libs.errors import ConfigError, NotFound
from libs.usecase.loader import UseCaseError, load_usecase, load_usecases, parse_usecase, spec_files
from libs.usecase.model import AggregateFeature, FieldSpec, RowFeature, UseCase

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "deploy" / "usecases"
TEMPLATE = Path(__file__).with_name("template.yaml")


class UnknownUseCase(NotFound):
    """A request or an event names a use case this service does not know.

    One type for every service: a gRPC call answers ``NOT_FOUND`` naming ``field``; a
    Kafka consumer dead-letters the event with this message.
    """

    def __init__(self, name: str, known: Iterable[str], field: str = "use_case") -> None:
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(f"{field}: unknown use case {name!r} (known: {listed})")
        self.name, self.field = name, field


class UseCases(dict[str, UseCase]):
    """The use cases a service knows, by name; :meth:`require` is the one lookup that
    fails the same way everywhere."""

    def require(self, name: str, field: str = "use_case") -> UseCase:
        """The use case called ``name``; :class:`UnknownUseCase` naming ``field`` if none."""
        try:
            return self[name]
        except KeyError:
            raise UnknownUseCase(name, self, field) from None


def load_default(directory: Path | None = None) -> UseCases:
    return UseCases(load_usecases(spec_files(directory or DEFAULT_DIR)))


def load_for_service(directory: Path | None = None) -> UseCases:
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
    "UnknownUseCase",
    "UseCase",
    "UseCaseError",
    "UseCases",
    "load_default",
    "load_for_service",
    "load_usecase",
    "load_usecases",
    "parse_usecase",
    "spec_files",
]
