#!/usr/bin/env bash
# Observability tools the telemetry tests run, installed by `make setup` (skip-if-present):
#
#   otelcol-aif   the OpenTelemetry Collector, compiled by the official builder (ocb) from
#                 the Go module proxy with the components listed in otelcol-builder.yaml,
#                 into the project's own build/tools/bin (about 3 minutes the first time)
#   prometheus    Debian's `prometheus` package (2.42), which also brings `promtool`
#
# The collector is rebuilt only when the manifest changes (a stamp file beside it).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${AIF_TOOLS_BIN:-$ROOT/build/tools/bin}
BUILDER_MODULE=go.opentelemetry.io/collector/cmd/builder
BUILDER_VERSION=v0.165.0
MANIFEST=$HERE/otelcol-builder.yaml

die() { echo "observability/tools.sh: $*" >&2; exit 1; }

# shellcheck source=../tools/go-toolchain.sh
source "$ROOT/deploy/tools/go-toolchain.sh"

install_otelcol() {
  local stamp="$BIN/.otelcol-aif.version" want
  want="$BUILDER_MODULE@$BUILDER_VERSION $(sha256sum "$MANIFEST" | cut -d' ' -f1)"
  if [ -x "$BIN/otelcol-aif" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  local go work
  go=$(find_go)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  echo "==> building the OpenTelemetry Collector with $BUILDER_MODULE@$BUILDER_VERSION (a few minutes the first time)"
  GOBIN=$work/bin GOFLAGS=-buildvcs=false "$go" install "$BUILDER_MODULE@$BUILDER_VERSION" \
    || die "go install $BUILDER_MODULE@$BUILDER_VERSION failed"
  # The builder generates the sources only: its own `go mod tidy` would also fetch the
  # test-only dependencies of contrib's modules, some of which the module proxy does not
  # serve. `go get` of the listed modules, then `go build`, fetches what the binary needs.
  sed "s|\${OUTPUT_PATH}|$work/dist|" "$MANIFEST" > "$work/manifest.yaml"
  "$work/bin/builder" --config "$work/manifest.yaml" --skip-get-modules --skip-compilation > "$work/builder.log" 2>&1 \
    || { tail -30 "$work/builder.log" >&2; die "generating otelcol-aif failed"; }
  local modules
  modules=$(sed -n 's/^ *- gomod: *\([^ ]*\) \(v[^ ]*\).*/\1@\2/p' "$MANIFEST")
  (
    cd "$work/dist"
    export GOFLAGS=-buildvcs=false CGO_ENABLED=0
    "$go" mod init otelcol-aif >/dev/null 2>&1
    # shellcheck disable=SC2086 # one argument per module
    "$go" get $modules >> "$work/builder.log" 2>&1
    "$go" build -mod=mod -trimpath -ldflags=-s -o otelcol-aif . >> "$work/builder.log" 2>&1
  ) || { tail -30 "$work/builder.log" >&2; die "building otelcol-aif failed"; }
  mkdir -p "$BIN"
  mv -f "$work/dist/otelcol-aif" "$BIN/otelcol-aif"
  echo "$want" > "$stamp"
}

install_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || die "need root to apt-get install prometheus"
  echo "==> apt-get install prometheus"
  # policy-rc.d exiting 101 stops the package's postinst from starting a system
  # Prometheus on :9090 (the tests start their own).
  local policy=/usr/sbin/policy-rc.d written=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && written=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
  [ "$written" = 1 ] && rm -f "$policy"
  command -v promtool >/dev/null || die "prometheus installed, but promtool is missing"
}

install_prometheus
install_otelcol
