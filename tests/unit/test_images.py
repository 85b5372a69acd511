"""One image recipe (deploy/docker/Dockerfile) installs only the dependencies of the service
it is built for (deploy/docker/requirements/<service>.txt), at requirements.txt's pins: each
service's code imports with every other installed distribution hidden."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from aif.stack import SERVICES

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "deploy" / "docker" / "requirements"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
# Imported inside functions, not at module level: named here so the check covers them.
LAZY = {
    "featurestore": ["feast", "faust", "redis"],
    "trainer": ["torch", "psycopg", "alembic"],
    "evaluator": ["torch", "psycopg", "alembic"],
    "registry": ["torch", "psycopg", "alembic"],
    "gateway": ["uvloop", "tritonclient.grpc"],
    "monitor": ["psycopg", "alembic", "scipy.stats"],
}
OWN = {"libs", "services", "aifactory", "aif", "tests"}


def requirements(path: Path) -> list[Requirement]:
    """``path``'s requirements, following ``-r`` includes."""
    out: list[Requirement] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out += requirements(path.parent / line[3:].strip())
        elif line:
            out.append(Requirement(line))
    return out


def test_every_pin_is_the_one_requirements_txt_pins() -> None:
    pinned = {canonicalize_name(r.name): r for r in requirements(ROOT / "requirements.txt")}
    pinned.update({canonicalize_name(r.name): r for r in requirements(ROOT / "requirements-triton.txt")})
    files = sorted(REQUIREMENTS.glob("*.txt"))
    assert {f.stem for f in files} >= {*SERVICES, "triton"}
    for path in files:
        for req in requirements(path):
            main = pinned.get(canonicalize_name(req.name))
            assert main is not None, f"{path.name}: {req.name} is not in requirements.txt"
            assert str(req.specifier) == str(main.specifier), f"{path.name}: {req} vs requirements.txt {main}"
            assert str(req.specifier).startswith("=="), f"{path.name}: {req} is not pinned"


def test_gateway_and_ingestion_images_have_no_torch() -> None:
    for name in ("gateway", "ingestion", "featurestore", "monitor"):
        names = {canonicalize_name(r.name) for r in requirements(REQUIREMENTS / f"{name}.txt")}
        assert "torch" not in names, name


def test_the_dockerfile_builds_any_service_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG SERVICE\b", text, re.M)
    assert "deploy/docker/requirements/" in text and "${SERVICE}.txt" in text
    assert len(re.findall(r"^FROM ", text, re.M)) >= 3, "multi-stage: dependencies, service, triton"
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M), "runs as a non-root user"
    assert not list((ROOT / "services").glob("*/Dockerfile")), "one recipe: no per-service Dockerfiles"
    # The build context is what the images copy: never build/ (the signing key) or a venv.
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignore and not any(p.startswith(("!build", "!.venv")) for p in ignore)
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        top = source.split("/")[0]
        assert f"!{top}/" in ignore or any(p.startswith(f"!{top}/") for p in ignore), source


# Run in a child process: hide every installed distribution the service's requirement file
# does not bring (directly or through dependencies), then import all of the service's code.
_CHILD = r"""
import importlib, importlib.metadata as md, json, pkgutil, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

roots, service, lazy, own = json.loads(sys.argv[1])
allowed, todo = set(), [Requirement(r) for r in roots]
while todo:
    req = todo.pop()
    name = canonicalize_name(req.name)
    key = (name, frozenset(req.extras))
    if key in allowed:
        continue
    allowed.add(key)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    for spec in dist.requires or []:
        dep = Requirement(spec)
        if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in {"", *req.extras}):
            todo.append(dep)
names = {n for n, _ in allowed} | {"aifactory"}
hidden = {
    top: dists for top, dists in md.packages_distributions().items()
    if top not in own and not {canonicalize_name(d) for d in dists} & names
}
refused = []

class Hide:
    def find_spec(self, fullname, path=None, target=None):
        top, _, rest = fullname.partition(".")
        # The image holds libs/, the contracts and this one service: no other service, no aif/.
        if top in ("aif", "tests") or (top == "services" and rest and rest.split(".")[0] != service):
            raise ModuleNotFoundError(f"{fullname} is not in the {service} image")
        if top in hidden:
            refused.append(fullname)
            raise ModuleNotFoundError(f"{fullname} is not in the image ({', '.join(hidden[top])})")
        return None

sys.meta_path.insert(0, Hide())
package = importlib.import_module(f"services.{service}")
for info in pkgutil.walk_packages(package.__path__, f"services.{service}."):
    if info.name.endswith("__main__") or ".migrations" in info.name:
        continue
    importlib.import_module(info.name)
for name in lazy:
    importlib.import_module(name)
print(json.dumps(sorted({r.split(".")[0] for r in refused})))
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("service", list(SERVICES))
def test_service_code_imports_with_only_its_image_dependencies(service: str) -> None:
    roots = [str(r) for r in requirements(REQUIREMENTS / f"{service}.txt")]
    arg = json.dumps([roots, service, LAZY.get(service, []), sorted(OWN)])
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, arg], cwd=ROOT, capture_output=True, text=True, timeout=280
    )
    assert proc.returncode == 0, f"{service}: {proc.stderr[-3000:]}"
    # Optional imports a library tried and did without (feast tries torch) are fine.
    print(service, "did without:", proc.stdout.strip())
