#!/usr/bin/env bash
# Go tools the deployment-manifest tests run, built from the Go module proxy with
# `go install` into the project's own build/tools/bin (no download site, no Docker engine):
#
#   helm             helm.sh/helm/v3/cmd/helm                 `helm template` / `helm lint` of deploy/helm
#   docker-compose   github.com/docker/compose/v2/cmd         `docker-compose config` of docker-compose.yml
#   grpcurl          github.com/fullstorydev/grpcurl/cmd/grpcurl  the README's gRPC examples (server reflection)
#
# Each is skipped when the pinned version is already there (a stamp file beside it), so
# `make setup` stays quick after the first run (each build takes a few minutes on 2 cores).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${AIF_TOOLS_BIN:-$ROOT/build/tools/bin}

HELM_MODULE=helm.sh/helm/v3/cmd/helm
HELM_VERSION=v3.21.4
# v2.29.7: later v2 releases add `exclude` directives to go.mod, which `go install pkg@version` refuses.
COMPOSE_MODULE=github.com/docker/compose/v2/cmd
COMPOSE_VERSION=v2.29.7
GRPCURL_MODULE=github.com/fullstorydev/grpcurl/cmd/grpcurl
GRPCURL_VERSION=v1.9.1

die() { echo "go-tools.sh: $*" >&2; exit 1; }
# The go command keeps its module and build caches under $HOME; without one, in the project.
[ -n "${HOME:-}" ] || export GOPATH="$ROOT/build/tools/go" GOCACHE="$ROOT/build/tools/go-cache"

# shellcheck source=go-toolchain.sh
source "$ROOT/deploy/tools/go-toolchain.sh"

# install NAME MODULE VERSION: build MODULE@VERSION, keep its binary as $BIN/NAME.
install_tool() {
  local name=$1 module=$2 version=$3 stamp="$BIN/.$1.version"
  if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$module@$version" ]; then
    return
  fi
  local go gobin
  go=$(find_go)
  gobin=$(mktemp -d)
  echo "==> go install $module@$version (a few minutes the first time)"
  GOBIN=$gobin GOFLAGS=-buildvcs=false CGO_ENABLED=0 "$go" install -trimpath -ldflags=-s "$module@$version" \
    || { rm -rf "$gobin"; die "go install $module@$version failed"; }
  mkdir -p "$BIN"
  # A module's command is named after its folder (compose's is `cmd`): one binary each.
  mv -f "$gobin"/* "$BIN/$name"
  rm -rf "$gobin"
  echo "$module@$version" > "$stamp"
}

install_tool helm "$HELM_MODULE" "$HELM_VERSION"
install_tool docker-compose "$COMPOSE_MODULE" "$COMPOSE_VERSION"
install_tool grpcurl "$GRPCURL_MODULE" "$GRPCURL_VERSION"
