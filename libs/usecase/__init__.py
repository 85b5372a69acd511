"""Use cases are specs, not code: one YAML file per AI application.

A running factory learns its use cases from the registry's catalogue, not from files:
``aif usecase apply FILE`` sends a spec to the registry, which validates it, keeps it
versioned and audited, and publishes it on a compacted topic that every service follows
live (:mod:`libs.usecase.catalogue`, :mod:`libs.usecase.follower`; what may change without
a new model: :mod:`libs.usecase.compat`).

Files are for people and tools: the shipped specs live in ``deploy/usecases/`` (the demo
applies them like any user's), ``aif usecase new NAME`` scaffolds one from
``libs/usecase/template.yaml`` and ``aif usecase validate FILE`` checks one offline:

>>> from libs.usecase import load_usecases, spec_files, DEFAULT_DIR
>>> usecases = load_usecases(spec_files(DEFAULT_DIR))
>>> usecases["loan_approval"].deployment.promotion
'auto'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from libs.errors import NotFound
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

    @classmethod
    def view(cls, usecases: Mapping[str, UseCase]) -> UseCases:
        """``usecases`` itself when it is a :class:`UseCases` (a catalogue's live set, which
        changes while the service runs: see :mod:`libs.usecase.catalogue`), else a copy."""
        return usecases if isinstance(usecases, UseCases) else cls(usecases)

    def require(self, name: str, field: str = "use_case") -> UseCase:
        """The use case called ``name``; :class:`UnknownUseCase` naming ``field`` if none."""
        try:
            return self[name]
        except KeyError:
            raise UnknownUseCase(name, self, field) from None


def load_default(directory: Path | None = None) -> UseCases:
    """The specs of a folder (the shipped ones by default): for tools and tests, never a
    service's source of use cases (that is the catalogue)."""
    return UseCases(load_usecases(spec_files(directory or DEFAULT_DIR)))


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
    "load_usecase",
    "load_usecases",
    "parse_usecase",
    "spec_files",
]
