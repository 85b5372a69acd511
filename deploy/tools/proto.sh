#!/usr/bin/env bash
# Protobuf contracts: code generation and checks.
#
#   proto.sh gen               regenerate the Python code beside every .proto
#   proto.sh check-generated   fail when the committed generated code is stale
#   proto.sh lint              buf lint (STANDARD rules, proto/buf.yaml)
#   proto.sh breaking          buf breaking against the previous commit
#                              (PROTO_BREAKING_AGAINST=<git ref> to pick another)
#
# Python code is generated with the venv's grpcio-tools (the version pinned in
# requirements.txt, so output is byte-for-byte reproducible). buf comes from npm,
# pinned in deploy/tools/package-lock.json, and is installed into build/tools on
# first use.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

PROTO_DIR=proto
PKG_ROOT=$PROTO_DIR/aifactory
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
TOOLS_SRC=$ROOT/deploy/tools
TOOLS_DIR=$ROOT/build/tools
export LC_ALL=C

die() { echo "proto.sh: $*" >&2; exit 1; }

# Every .proto under proto/aifactory, in a stable order, relative to proto/.
proto_files() {
  (cd "$PROTO_DIR" && find aifactory -type f -name '*.proto' | sort)
}

check_grpc_tools() {
  [ -x "$PYTHON" ] || die "no Python at $PYTHON: run make setup (or set PYTHON)"
  local want have
  want=$(sed -n 's/^grpcio-tools==\([^[:space:]#]*\).*/\1/p' requirements.txt 2>/dev/null | head -n1)
  have=$("$PYTHON" -c 'from importlib.metadata import version; print(version("grpcio-tools"))' 2>/dev/null) \
    || die "grpcio-tools is not installed in $PYTHON: run make setup"
  if [ -n "$want" ] && [ "$want" != "$have" ]; then
    die "grpcio-tools $have is installed but requirements.txt pins $want; generated code would differ: run make setup"
  fi
}

cmd_gen() {
  check_grpc_tools
  [ -d "$PKG_ROOT" ] || die "no $PKG_ROOT folder"
  # Remove everything generated before, so a deleted .proto leaves nothing behind.
  find "$PKG_ROOT" -type f \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' \
    -o -name '__init__.py' \) -delete
  find "$PKG_ROOT" -depth -type d -name '__pycache__' -exec rm -rf {} +
  find "$PKG_ROOT" -mindepth 1 -depth -type d -empty -delete

  local files=()
  mapfile -t files < <(proto_files)
  [ "${#files[@]}" -gt 0 ] || die "no .proto files under $PKG_ROOT"

  (cd "$PROTO_DIR" && "$PYTHON" -m grpc_tools.protoc -I . \
    --python_out=. --pyi_out=. --grpc_python_out=. "${files[@]}")

  # Empty __init__.py in every package folder, from aifactory/ down.
  local f dir
  for f in "${files[@]}"; do
    dir=$(dirname "$f")
    while [ "$dir" != "." ]; do
      : > "$PROTO_DIR/$dir/__init__.py"
      dir=$(dirname "$dir")
    done
  done
  echo "generated Python code for ${#files[@]} proto files under $PKG_ROOT"
}

cmd_check_generated() {
  git rev-parse --git-dir >/dev/null 2>&1 || die "not a git checkout"
  cmd_gen
  local stale=0
  git diff --exit-code --stat -- "$PROTO_DIR" || stale=1
  local status
  status=$(git status --porcelain --untracked-files=all -- "$PROTO_DIR")
  if [ -n "$status" ]; then
    echo "$status"
    stale=1
  fi
  if [ "$stale" -ne 0 ]; then
    echo "generated code is stale: run make proto (then commit the changes under $PROTO_DIR/)" >&2
    exit 1
  fi
  echo "generated code is up to date"
}

# Installs the pinned buf into build/tools when missing or when the lock changed;
# prints the path of the buf binary.
ensure_buf() {
  local stamp=$TOOLS_DIR/.package-lock.sha256 want
  want=$(sha256sum "$TOOLS_SRC/package.json" "$TOOLS_SRC/package-lock.json" | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -e "$TOOLS_DIR/node_modules/.bin/buf" ]; then
    command -v npm >/dev/null || die "npm is needed to install buf (apt-get install npm)"
    echo "==> installing buf into build/tools (npm ci)" >&2
    mkdir -p "$TOOLS_DIR"
    cp "$TOOLS_SRC/package.json" "$TOOLS_SRC/package-lock.json" "$TOOLS_DIR/"
    (cd "$TOOLS_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) \
      || die "npm ci failed in build/tools"
    echo "$want" > "$stamp"
  fi
  # Prefer the native binary of the platform package; fall back to the node shim.
  local native
  native=$(ls "$TOOLS_DIR"/node_modules/@bufbuild/buf-*/bin/buf 2>/dev/null | head -n1 || true)
  if [ -n "$native" ] && [ -x "$native" ]; then
    echo "$native"
  else
    echo "$TOOLS_DIR/node_modules/.bin/buf"
  fi
}

cmd_lint() {
  local buf
  buf=$(ensure_buf)
  "$buf" lint "$PROTO_DIR"
  echo "buf lint: ok"
}

cmd_breaking() {
  local buf ref=${PROTO_BREAKING_AGAINST:-HEAD~1}
  git rev-parse --git-dir >/dev/null 2>&1 || die "not a git checkout"
  if ! git rev-parse --verify --quiet "$ref^{commit}" >/dev/null; then
    echo "proto.sh breaking: no commit $ref to compare with (first commit?); skipping"
    return 0
  fi
  if ! git ls-tree -r --name-only "$ref" -- "$PROTO_DIR/" | grep -q '\.proto$'; then
    echo "proto.sh breaking: $ref has no .proto files under $PROTO_DIR/; skipping"
    return 0
  fi
  buf=$(ensure_buf)
  local gitdir
  gitdir=$(git rev-parse --path-format=absolute --git-common-dir)
  "$buf" breaking "$PROTO_DIR" --against "$gitdir#ref=$(git rev-parse "$ref^{commit}"),subdir=$PROTO_DIR"
  echo "buf breaking against $ref: ok"
}

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
  gen) cmd_gen ;;
  check-generated) cmd_check_generated ;;
  lint) cmd_lint ;;
  breaking) cmd_breaking ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
