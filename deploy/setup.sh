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
# The project itself, editable: `libs`, `services`, `aif` and the generated `aifactory`
# (proto/) import from this checkout in every process (tests, services, Triton's python
# stub), and `.venv/bin/aif` is its console script. Reinstalled when pyproject.toml changes.
if [ ! -f .venv/.project.sha ] || ! sha256sum -c --status .venv/.project.sha 2>/dev/null; then
  echo "==> installing the project (editable)"
  # A venv made before the project was installable had a hand-written path file instead.
  rm -f "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/aifactory.pth"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  sha256sum pyproject.toml > .venv/.project.sha
fi

# The compiled span encoder (libs/telemetry/_spanwire.c: the OTLP export's per-span work
# on a service's request path, see libs/telemetry/spanwire.py). Rebuilt when the source is
# newer; a service without it encodes in Python, byte for byte the same, only slower.
EXT="libs/telemetry/_spanwire$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
if [ ! -f "$EXT" ] || [ libs/telemetry/_spanwire.c -nt "$EXT" ]; then
  INCLUDE="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  if { ! command -v cc >/dev/null 2>&1 || [ ! -f "$INCLUDE/Python.h" ]; } && [ "$(id -u)" = 0 ]; then
    echo "==> installing a C compiler and Python's headers (the span encoder)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev python3-dev
  fi
  echo "==> compiling the span encoder ($EXT)"
  cc -O2 -fPIC -shared -Wall -Wextra -Werror -I"$INCLUDE" -o "$EXT" libs/telemetry/_spanwire.c
fi

.venv/bin/python -m aif.infra install "$@"
# helm and the Compose CLI, built from the Go module proxy into build/tools/bin (the
# deployment-manifest tests run them); skipped when the pinned versions are there.
bash deploy/tools/go-tools.sh
# The OpenTelemetry Collector (built from the Go module proxy into build/tools/bin) and
# Prometheus with promtool (Debian), for the telemetry tests; skipped when present.
bash deploy/observability/tools.sh
# make test-multihost (root only) needs `ip` (iproute2); setpriv, unshare (util-linux) and
# useradd (passwd) come with every Debian base system. Skipped when present or not root.
if ! command -v ip >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "==> installing iproute2 (network namespaces for make test-multihost)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2
fi
