# Sourced by the scripts that build Go tools (deploy/tools/go-tools.sh,
# deploy/observability/tools.sh): find_go prints the go command, installing Debian's
# golang-go as root when there is none. Expects a `die` function.

find_go() {
  if command -v go >/dev/null; then command -v go; return; fi
  if [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go; return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> apt-get install golang-go" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >&2
    command -v go && return
  fi
  die "no Go toolchain: install Go (Debian: golang-go), then run make setup again"
}
