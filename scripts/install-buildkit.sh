#!/usr/bin/env bash
# Builds buildkitd (and buildctl) from BuildKit's Go module and installs them
# into ${PREFIX:-/usr/local}/bin. `go install` refuses the module because of
# its exclude directives, so the binaries are built inside the module's
# download directory with -mod=mod (see shared FIELD-NOTES).
set -euo pipefail
VERSION=${BUILDKIT_VERSION:-v0.26.3}
PREFIX=${PREFIX:-/usr/local}
if command -v buildkitd >/dev/null 2>&1 && buildkitd --version 2>/dev/null | grep -q -- "$VERSION"; then
  echo "buildkitd $VERSION already installed: $(command -v buildkitd)"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
dir=$(GOFLAGS=-mod=mod go mod download -json "github.com/moby/buildkit@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "could not download github.com/moby/buildkit@$VERSION" >&2; exit 1; }
cd "$dir"
mkdir -p "$PREFIX/bin"
GOFLAGS=-mod=mod go build -trimpath -o "$PREFIX/bin/buildkitd" \
  -ldflags "-X github.com/moby/buildkit/version.Version=$VERSION" ./cmd/buildkitd
GOFLAGS=-mod=mod go build -trimpath -o "$PREFIX/bin/buildctl" \
  -ldflags "-X github.com/moby/buildkit/version.Version=$VERSION" ./cmd/buildctl
echo "installed $("$PREFIX/bin/buildkitd" --version)"
