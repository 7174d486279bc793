#!/usr/bin/env bash
# Installs Pebble, Let's Encrypt's small ACME test server, built from its Go
# module, into ${PREFIX:-/usr/local}/bin. The router's TLS tests
# (internal/router/certs/acme_test.go) start it on loopback to issue certificates;
# they find it on PATH or through $PEBBLE. About 5 s to build.
set -euo pipefail
VERSION=${PEBBLE_VERSION:-v2.10.1}
PREFIX=${PREFIX:-/usr/local}
stamp="$PREFIX/share/slipway/pebble.version"
if [ -x "$PREFIX/bin/pebble" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$VERSION" ]; then
  echo "pebble $VERSION already installed: $PREFIX/bin/pebble"
  exit 0
fi
export PATH=/usr/local/go/bin:$PATH
mkdir -p "$PREFIX/bin" "$(dirname "$stamp")"
GOBIN="$PREFIX/bin" GOFLAGS=-mod=mod go install -trimpath "github.com/letsencrypt/pebble/v2/cmd/pebble@$VERSION"
echo "$VERSION" >"$stamp"
echo "installed pebble $VERSION: $PREFIX/bin/pebble"
