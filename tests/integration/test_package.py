"""The project installs as a package: `pip install -e .` in a fresh virtualenv gives `aif`.

Nothing else is installed by hand: the dependencies the runtime libraries and the CLI
import come from pyproject.toml, and the generated contracts (proto/) import as
`aifactory` through the installed package, not through a path file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_pip_install_e_in_a_fresh_venv_gives_a_working_aif(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    # Run from elsewhere, so nothing is imported from the working directory.
    helped = subprocess.run(
        [str(venv / "bin" / "aif"), "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert helped.returncode == 0, helped.stderr
    for command in ("demo", "up", "usecase", "token", "audit", "train"):
        assert command in helped.stdout
    specs = sorted(str(p) for p in (ROOT / "deploy" / "usecases").glob("*.yaml"))
    checked = subprocess.run(
        [str(venv / "bin" / "aif"), "usecase", "validate", *specs],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert checked.returncode == 0, checked.stderr
    assert "loan_approval v1" in checked.stdout
    imported = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import aifactory.registry.v1.registry_service_pb2, libs.usecase, services; print('ok')",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert imported.stdout.strip() == "ok", imported.stderr
