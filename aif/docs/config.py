"""``python -m aif.docs.config``: writes docs/configuration.md from the settings classes.

Every setting of every service, generated from the pydantic models themselves
(``libs/settings`` and ``services/*/settings.py``): the variable names, type, bounds and
default come from the model; the description is the comment written above the field
(or its ``Field(description=...)``). ``--check`` exits 1 when the file is stale
(tests/unit/test_config_reference.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import io
import sys
import tokenize
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from libs.settings import PREFIX, REPO_ROOT, ServiceSettings

TARGET = REPO_ROOT / "docs" / "configuration.md"
SERVICES = ("ingestion", "featurestore", "trainer", "evaluator", "registry", "gateway", "monitor")


def service_classes() -> list[type[ServiceSettings]]:
    """The settings class of each service, in the order of the README's table."""
    out = []
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.settings")
        found = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and issubclass(obj, ServiceSettings)
            and obj.__module__ == module.__name__
            and obj.service
        ]
        if len(found) != 1:
            raise SystemExit(f"services/{name}/settings.py: expected one settings class, found {len(found)}")
        out.append(found[0])
    return out


def groups(classes: list[type[ServiceSettings]]) -> list[type[BaseModel]]:
    """The shared bases the services' classes are built of (libs.settings and any other
    settings model they mix in), base first."""
    seen: dict[type[BaseModel], None] = {}
    for cls in classes:
        for base in reversed(cls.__mro__):
            if (
                isinstance(base, type)
                and issubclass(base, BaseModel)
                and base not in classes
                and own_fields(base)
            ):
                seen.setdefault(base, None)
    return list(seen)


def own_fields(cls: type) -> list[str]:
    """Fields declared (or re-declared) in ``cls``'s own body, in source order."""
    return [n for n in cls.__dict__.get("__annotations__", {}) if n in getattr(cls, "model_fields", {})]


def comments(cls: type) -> dict[str, str]:
    """The comment block right above each field of ``cls`` (and any comment on its line)."""
    source = inspect.getsource(cls)
    lines = source.splitlines()
    by_line: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = tok.string.lstrip("#").strip()
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out: dict[str, str] = {}
    lead = ""  # the first field of a run of fields under one comment
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            lead = ""
            continue
        text: list[str] = []
        n = node.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):
            text.insert(0, by_line.get(n, ""))
            n -= 1
        for ln in range(node.lineno, (node.end_lineno or node.lineno) + 1):
            if ln in by_line and not lines[ln - 1].strip().startswith("#"):
                text.append(by_line[ln])
        name = node.target.id
        above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
        if n < node.lineno - 1:  # a comment block right above: this field leads a run
            lead = name
        elif not above or not lead:
            lead = ""
        out[name] = " ".join(t for t in text if t)
        if not out[name] and lead and lead != name and name.split("_")[0] == lead.split("_")[0]:
            out[name] = f"See `{lead}` above."
    return out


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(f"`{v}`" if v != "" else '`""`' for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        return " or ".join(_type(a) for a in args) + (" (optional)" if optional else "")
    if annotation is SecretStr:
        return "secret string"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "Path": "path"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation).replace("typing.", "")


def _bounds(info: FieldInfo) -> str:
    marks = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    out = []
    for meta in info.metadata:
        for attr, sign in marks.items():
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return ", ".join(out)


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "(computed)"
    value = info.default
    if isinstance(value, SecretStr):
        return '`""`' if not value.get_secret_value() else "(set)"
    if value is None:
        return "unset"
    if isinstance(value, Path):
        # Paths inside the checkout, relative to it: the file must not depend on where it is.
        try:
            return f"`<repo>/{value.relative_to(REPO_ROOT)}`"
        except ValueError:
            return f"`{value}`"
    text = str(value).replace(str(REPO_ROOT), "<repo>")
    return f"`{text}`" if text else '`""`'


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(cls: type[BaseModel], names: list[str], service: str | None) -> Iterator[str]:
    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # the nearest class's comment wins
        if isinstance(klass, type) and issubclass(klass, BaseModel) and klass is not BaseModel:
            notes.update({k: v for k, v in comments(klass).items() if v})
    yield "| variable | type | default | description |"
    yield "| --- | --- | --- | --- |"
    for name in names:
        info = cls.model_fields[name]
        var = (
            f"`{PREFIX}{service.upper()}_{name.upper()}`"
            if service
            else f"`{PREFIX}<SERVICE>_{name.upper()}`"
        )
        kind = _type(info.annotation)
        bounds = _bounds(info)
        if bounds:
            kind += f" ({bounds})"
        text = info.description or notes.get(name, "")
        yield f"| {var} | {_cell(kind)} | {_cell(_default(info))} | {_cell(text)} |"


def _doc(cls: type) -> str:
    return " ".join(line.strip() for line in (inspect.getdoc(cls) or "").splitlines() if line.strip())


def render() -> str:
    classes = service_classes()
    shared = groups(classes)
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m aif.docs.config` from the settings classes; do not edit by hand. -->",
        "",
        "Every service reads its settings from environment variables when it starts, validated",
        "by its pydantic model ([`libs/settings`](../libs/settings/__init__.py)). A setting `name` of",
        f"service `svc` is read from `{PREFIX}SVC_NAME` first, then from the shared `{PREFIX}NAME`, then",
        f"its default; an `{PREFIX}SVC_*` variable that names no setting stops the service at start, as",
        "does a value out of bounds. `<repo>` is the checkout the service runs from.",
        "",
        "Each service's own table lists the settings it declares or whose default it changes; it",
        "also has every setting of the shared groups it names under *includes*.",
        "",
        "## Shared settings",
    ]
    for group in shared:
        users = [c.service for c in classes if issubclass(c, group)]
        where = inspect.getsourcefile(group) or ""
        out += [
            "",
            f"### {group.__name__}",
            "",
            f"Declared in [`{Path(where).relative_to(REPO_ROOT)}`](../{Path(where).relative_to(REPO_ROOT)}); "
            f"used by {', '.join(users)}.",
        ]
        doc = _doc(group)
        if doc and group is not ServiceSettings:
            out += ["", doc]
        out += ["", *table(group, own_fields(group), None)]
    out += ["", "## Services"]
    for cls in classes:
        path = Path(inspect.getsourcefile(cls) or "").relative_to(REPO_ROOT)
        includes = [b.__name__ for b in shared if issubclass(cls, b)]
        out += [
            "",
            f"### {cls.service}",
            "",
            f"`{cls.__name__}` in [`{path}`](../{path}); includes {', '.join(includes)}.",
        ]
        renamed = getattr(cls, "renamed", {})
        if renamed:
            moved = ", ".join(
                f"`{PREFIX}{cls.service.upper()}_{old.upper()}` → `{PREFIX}{cls.service.upper()}_{new.upper()}`"
                for old, new in renamed.items()
            )
            out += ["", f"Renamed (the old name still works, with a warning): {moved}."]
        out += ["", *table(cls, own_fields(cls), cls.service)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aif.docs.config", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/configuration.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not TARGET.is_file() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(REPO_ROOT)} is stale: run python -m aif.docs.config", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
