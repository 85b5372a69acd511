#!/usr/bin/env bash
# Installs everything the factory needs on a fresh Debian machine: the Python
# virtualenv, then the local infrastructure (Debian packages, Kafka jars, buf).
# Idempotent: each step is skipped when already done. Run by `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $PY"
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.requirements.sha ] || ! sha256sum -c --status .venv/.requirements.sha 2>/dev/null; then
  echo "==> installing Python requirements (torch is a large download the first time)"
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install --disable-pip-version-check -r requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-triton.txt
  sha256sum requirements.txt requirements-triton.txt > .venv/.requirements.sha
fi
# The repository root holds the `libs` and `services` packages and proto/ holds the
# generated `aifactory` contracts: put both on the venv's path once, so every
# process (tests, services, Triton's python stub) imports them the same way.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$PWD" "$PWD/proto" > "$site/aifactory.pth"
# The `aif` command line.
printf '#!/bin/sh\nexec "%s/.venv/bin/python" -m libs.cli "$@"\n' "$PWD" > .venv/bin/aif
chmod +x .venv/bin/aif

.venv/bin/python -m libs.infra install "$@"
