#!/usr/bin/env bash
# Builds buildkitd and buildctl and installs them into ${PREFIX:-/usr/local}/bin.
# They are built from this module: go.mod pins github.com/moby/buildkit (the
# version of Slipway's BuildKit client) and names both commands as tools, so
# they build with Slipway's own dependencies (`go install …@VERSION` refuses
# BuildKit's module for its exclude directives, see shared FIELD-NOTES).
# Main packages of this module given as arguments are built by the same
# `go build` into bin/: setup.sh passes ./cmd/slipway, so the ~550 packages
# slipway shares with buildkitd compile once (same flags, one build).
# A command already installed at go.mod's version is not rebuilt.
#
#   install-buildkit.sh [--no-buildctl] [--strip] [PKG...]
#
# --no-buildctl: buildkitd only; buildctl, BuildKit's CLI, is for the tests
# (internal/baseimage) and debugging, Slipway does not run it.
# --strip: link without symbol table and debug information (-s -w), for the
# first run's faster build (setup.sh --for-run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
PREFIX=${PREFIX:-/usr/local}
cmds=(buildkitd buildctl)
ldflags=
while [ $# -gt 0 ]; do
  case "$1" in
    --no-buildctl) cmds=(buildkitd) ;;
    --strip) ldflags="-s -w " ;;
    *) break ;;
  esac
  shift
done
VERSION=$(go list -m -f '{{.Version}}' github.com/moby/buildkit)
pkgs=("$@")
for cmd in "${cmds[@]}"; do
  if "$PREFIX/bin/$cmd" --version 2>/dev/null | grep -q -- "$VERSION"; then
    echo "$cmd $VERSION already installed: $PREFIX/bin/$cmd"
  else
    pkgs+=("github.com/moby/buildkit/cmd/$cmd")
  fi
done
[ ${#pkgs[@]} -gt 0 ] || exit 0
work=$(mktemp -d "${TMPDIR:-/tmp}/install-buildkit.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "building ${pkgs[*]} (BuildKit $VERSION); on 2 cores with empty Go caches this takes a few minutes"
SECONDS=0
go build -ldflags "$ldflags-X github.com/moby/buildkit/version.Version=$VERSION" -o "$work/" "${pkgs[@]}"
mkdir -p bin "$PREFIX/bin"
for pkg in "${pkgs[@]}"; do
  name=${pkg##*/}
  case "$pkg" in
    github.com/moby/buildkit/cmd/*)
      # Replace, not overwrite: a running buildkitd keeps its binary.
      cp "$work/$name" "$PREFIX/bin/.$name.tmp" && mv -f "$PREFIX/bin/.$name.tmp" "$PREFIX/bin/$name"
      echo "installed $("$PREFIX/bin/$name" --version)" ;;
    *)
      mv -f "$work/$name" "bin/$name"
      echo "built $(pwd)/bin/$name" ;;
  esac
done
echo "install-buildkit.sh: built in ${SECONDS}s"
