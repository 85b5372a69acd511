"""Loading use-case specs from YAML with errors that name the key and its line.

YAML is parsed with the safe loader only (no Python tags, no anchors' billion
laughs past a size cap): a spec is data from people, not code.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from libs.errors import InvalidArgument
from libs.usecase.model import UseCase

MAX_SPEC_BYTES = 256 * 1024
MAX_ALIASES = 50


class UseCaseError(InvalidArgument):
    """A spec is invalid; ``field`` is the dotted key, ``line`` its line in the file."""

    def __init__(self, source: str, key: str, line: int | None, message: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(key or "<spec>", message)
        self.message = f"{where}: {key + ': ' if key else ''}{message}"
        self.args = (self.message,)
        self.source, self.key, self.line = source, key, line


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a flood of aliases (exponential expansion)."""

    aliases_seen = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen += 1
            if self.aliases_seen > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases")
        return super().compose_node(parent, index)


def _lines(node: yaml.Node, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Dotted key path → 1-based line, for every key and list item of the document."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            lines.update(_lines(value, sub))
            lines[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_lines(item, (*path, str(i))))
    return lines


def _line_of(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int | None:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path)


def parse_usecase(text: str, source: str = "<spec>") -> UseCase:
    """Validate one spec given as YAML text; raises :class:`UseCaseError`."""
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise UseCaseError(source, "", None, f"spec is larger than {MAX_SPEC_BYTES} bytes")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise UseCaseError(source, "", None, "spec is empty")
        lines = _lines(node)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UseCaseError(
            source,
            "",
            mark.line + 1 if mark else None,
            f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
        ) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise UseCaseError(source, "", 1, "a spec is a mapping of sections")
    try:
        return UseCase.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = tuple(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        # Cross-field errors are raised on the whole spec and start with their own path.
        if not path and ": " in message:
            key, message = message.split(": ", 1)
            path = tuple(key.split("."))
        extra = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise UseCaseError(source, ".".join(path), _line_of(lines, path), message + extra) from None


def load_usecase(path: Path) -> UseCase:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UseCaseError(str(path), "", None, f"cannot read: {exc}") from None
    return parse_usecase(text, str(path))


def spec_files(directory: Path) -> list[Path]:
    """The specs of a directory: ``*.yaml`` files not starting with ``_`` (templates)."""
    return sorted(p for p in directory.glob("*.yaml") if not p.name.startswith("_"))


def load_usecases(paths: Iterable[Path]) -> dict[str, UseCase]:
    """Load every spec; all or nothing, and two specs may not share a name."""
    found: dict[str, UseCase] = {}
    for path in paths:
        spec = load_usecase(path)
        if spec.name in found:
            raise UseCaseError(str(path), "name", None, f"use case {spec.name!r} is defined twice")
        found[spec.name] = spec
    return found
