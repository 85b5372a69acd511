"""What the deployment manifests (docker-compose.yml, deploy/helm/aifactory) must agree on
with the code, read from the settings classes at test time: every AIF_ variable a
manifest sets is a setting of that service, and every required setting is set."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path

import pytest

from aif.stack import SERVICES
from libs.settings import ClientSettings, ServiceSettings, env_name

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "build" / "tools" / "bin"


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class services/<service>/settings.py declares (not a mixin it imports)."""
    module = importlib.import_module(f"services.{service}.settings")
    classes = [
        v
        for k, v in vars(module).items()
        if k.endswith("Settings") and isinstance(v, type) and v.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"services/{service}/settings.py declares {classes}"
    return classes[0]


def all_settings() -> dict[str, type[ServiceSettings]]:
    return {name: settings_class(name) for name in SERVICES}


def callers() -> set[str]:
    """Services that call others, so hold a service token: those whose settings say so."""
    return {name for name, cls in all_settings().items() if issubclass(cls, ClientSettings)}


def env_problems(service: str, names: Iterable[str], where: str) -> list[str]:
    """Why the AIF_ variables ``names`` set for ``service`` in ``where`` disagree with its
    settings class: one that names no setting (a scoped one, or a shared one no field
    has), or a required setting (no default) left unset."""
    cls = settings_class(service)
    fields = cls.model_fields
    scoped = f"AIF_{service.upper()}_"
    problems, seen = [], set()
    for var in names:
        if not var.startswith("AIF_"):
            continue
        field = var[len(scoped) :] if var.startswith(scoped) else var[len("AIF_") :]
        field = field.lower()
        if field not in fields:
            problems.append(f"{where}: {service} gets {var}, which names no setting of {cls.__name__}")
        seen.add(field)
    for field, info in fields.items():
        if info.is_required() and field not in seen:
            problems.append(
                f"{where}: {service} needs {env_name(service, field)} (no default) and it is unset"
            )
    return problems


def tool(name: str) -> Path:
    """A tool `make setup` builds into build/tools/bin; missing, the test fails (never skips)."""
    path = TOOLS / name
    if not path.is_file():
        pytest.fail(
            f"{path} is not installed: run `make setup` (deploy/tools/go-tools.sh builds it "
            "from the Go module proxy)",
            pytrace=False,
        )
    return path
